"""`make smoke`: a real WebSocket client against a running stack (deployed, or `make up`), step by
step, each phase timed: connect two clients (a requester and a watcher), LIST_STYLES, a small public
job (accepted, its preview, its first progress, its result, the result fetched over HTTPS, the
broadcast seen by the watcher), a small private job (the same, its presigned result fetched,
GET_JOB with its token, and never broadcast). Any step that fails stops the run with the reason,
and the exit status is 1.

A job may wait many minutes for Batch to start a GPU instance, and API Gateway closes a connection
that has been idle for 10 minutes. So while it waits, each client sends a request every
`keepalive` seconds: the requester a GET_JOB of its job (which also follows it), the watcher a
LIST_IMAGES of one entry. A connection that closes all the same is opened again; the requester then
follows its job with GET_JOB (the job's pushes went to the old connection), and a watcher that was
away when the broadcast went out looks for the job in the Feed instead. The run says how often it
reconnected."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from PIL import Image

SIZE = 64  # the smallest job by default: a smoke test, not a benchmark
JPEG_MAGIC = b"\xff\xd8\xff"
# API Gateway closes a connection idle for 10 minutes: a request every 5 keeps it open (a ping frame
# is not a message and does not count)
KEEPALIVE_SECONDS = 300.0
POLL_AFTER_RECONNECT = 5.0  # GET_JOB this often once the job's pushes go to a connection now gone


class SmokeError(Exception):
    pass


def with_key(url: str, key: str | None) -> str:
    if not key:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"key": key})) if q)
    return urlunsplit(parts._replace(query=query))


def photo_data_url() -> str:
    """A 96x64 PNG: a gradient with a disc (something a style visibly changes), as a data URL."""
    image = Image.new("RGB", (96, 64))
    image.putdata([(x * 2 + 40, y * 3 + 30, 200 - x) for y in range(64) for x in range(96)])
    for y in range(18, 46):
        for x in range(34, 62):
            if (x - 48) ** 2 + (y - 32) ** 2 < 180:
                image.putpixel((x, y), (230, 80, 50))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.getvalue()).decode()


@dataclass
class Client:
    """One connection, opened again when it closes: every message it receives is kept, with the
    moment it arrived, and can be waited for."""

    url: str
    ws: Any = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    arrived_at: list[float] = field(default_factory=list)  # time.monotonic() of each message of `seen`
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    reconnects: int = 0
    opened_at: float = 0.0

    @classmethod
    async def connect(cls, url: str) -> Client:
        client = cls(url)
        await client._open()
        return client

    async def _open(self) -> None:
        try:
            self.ws = await websockets.connect(self.url, open_timeout=30, max_size=2**20)
        except websockets.InvalidStatus as refused:
            status = refused.response.status_code
            hint = " (the stack has an access key: pass --key)" if status in (401, 403) else ""
            raise SmokeError(f"the connection was refused with HTTP {status}{hint}") from None
        except (OSError, TimeoutError) as failure:
            raise SmokeError(f"the connection could not be opened: {failure}") from None
        self.opened_at = time.monotonic()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.seen.append(json.loads(raw))
                self.arrived_at.append(time.monotonic())
                self.arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.arrived.set()  # a waiter wakes up and sees that the connection closed

    @property
    def closed(self) -> bool:
        return self.reader is None or self.reader.done()

    async def reopen(self) -> None:
        """A new connection in place of a closed one (the messages seen so far are kept)."""
        self.reconnects += 1
        await self._open()

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            await self.reopen()
        try:
            await self.ws.send(json.dumps(message))
        except websockets.ConnectionClosed:  # closed between the check and the send
            await self.reopen()
            await self.ws.send(json.dumps(message))

    async def next_message(self, timeout: float) -> None:
        """Returns when a message arrives, the connection closes, or `timeout` seconds pass."""
        self.arrived.clear()
        if self.closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.arrived.wait(), max(0.0, timeout))

    async def wait_for(self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                       start: int = 0) -> dict[str, Any]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            for message in self.seen[start:]:
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                events = [m.get("event") for m in self.seen[start:]][-8:]
                raise SmokeError(f"{what}: nothing within {timeout:g} s (last events: {events})")
            if self.closed:
                raise SmokeError(f"{what}: the connection closed while waiting")
            await self.next_message(remaining)

    async def ask(self, message: dict[str, Any], answer: str, timeout: float = 30) -> dict[str, Any]:
        """Sends a request and waits for its answer (or its ERROR, which fails the step). A read
        (anything but TRANSFER_STYLE) whose connection closed before the answer is asked again once,
        on a new connection; a job is never sent twice."""
        for attempt in (1, 2):
            start = len(self.seen)
            await self.send(message)
            try:
                reply = await self.wait_for(
                    message["action"], lambda m: m.get("event") in (answer, "ERROR"), timeout, start
                )
                break
            except SmokeError:
                if not self.closed or attempt == 2 or message["action"] == "TRANSFER_STYLE":
                    raise
        if reply["event"] == "ERROR":
            raise SmokeError(f"{message['action']} was refused: {reply['data'].get('message')}")
        return reply["data"]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    if not body.startswith(JPEG_MAGIC):
        raise SmokeError(f"the result at {url} is not a JPEG")
    return body


class Steps:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.times: dict[str, float] = {}

    def record(self, name: str, seconds: float, note: str = "") -> None:
        self.times[name] = seconds
        print(f"  {name:<44} {seconds:7.2f} s{f'  ({note})' if note else ''}", file=self.out, flush=True)

    def missing(self, name: str, why: str) -> None:
        print(f"  {name:<44} {'none':>9}  ({why})", file=self.out, flush=True)

    @contextlib.asynccontextmanager
    async def step(self, name: str):
        started = time.monotonic()
        note: list[str] = []
        try:
            yield note
        except SmokeError as failure:
            print(f"  {name:<44} FAILED after {time.monotonic() - started:.1f} s: {failure}", file=self.out, flush=True)
            raise
        self.record(name, time.monotonic() - started, "; ".join(note))


@dataclass
class Followed:
    """What became of a job, and when (time.monotonic()) each phase was first seen."""

    job_id: str
    token: str
    sent: float
    preview: float | None = None
    first_progress: float | None = None
    ended: float | None = None
    result: str | None = None
    error: str | None = None
    progress_events: int = 0
    reconnected: bool = False

    def take_push(self, event: str, data: dict[str, Any], at: float) -> None:
        if event == f"TRANSFER_STYLE_PREVIEW::{self.job_id}":
            self.preview = self.preview or at
        elif event == f"TRANSFER_STYLE_PROGRESS::{self.job_id}":
            self.progress_events += 1
            self.first_progress = self.first_progress or at
        elif event == f"TRANSFER_STYLE_COMPLETED::{self.job_id}" and self.ended is None:
            self.ended, self.result = at, data.get("result")
        elif event == f"TRANSFER_STYLE_FAILED::{self.job_id}" and self.ended is None:
            self.ended, self.error = at, data.get("error") or "no reason was given"

    def take_state(self, state: dict[str, Any], at: float) -> None:
        """A GET_JOB answer: what it says is there was there by `at` at the latest."""
        if state.get("preview"):
            self.preview = self.preview or at
        if (state.get("progress") or 0) > 0:
            self.first_progress = self.first_progress or at
        if self.ended is None and state.get("status") == "SUCCEEDED":
            self.ended, self.result = at, state.get("result")
        elif self.ended is None and state.get("status") == "FAILED":
            self.ended, self.error = at, state.get("error") or "no reason was given"


async def follow(requester: Client, job: Followed, job_timeout: float, keepalive: float) -> None:
    """Waits for the job's end from its pushes; every `keepalive` seconds of silence (0: never) a
    GET_JOB keeps the connection open and follows the job. After a reconnect the pushes go to the
    old connection, so GET_JOB follows it every few seconds."""
    deadline = job.sent + job_timeout
    read = 0
    quiet_since = time.monotonic()
    while True:
        for message, at in zip(requester.seen[read:], requester.arrived_at[read:], strict=True):
            job.take_push(str(message.get("event")), message.get("data") or {}, at)
        read = len(requester.seen)
        if job.ended is not None:
            return
        now = time.monotonic()
        if now >= deadline:
            raise SmokeError(f"the job's result: nothing within {job_timeout:g} s")
        interval = POLL_AFTER_RECONNECT if job.reconnected else keepalive
        if requester.closed or (interval and now - quiet_since >= interval):
            if requester.closed:
                await requester.reopen()
                job.reconnected = True
            asked = {"action": "GET_JOB", "jobId": job.job_id, "jobToken": job.token}
            job.take_state(await requester.ask(asked, "JOB"), time.monotonic())
            quiet_since = time.monotonic()
            continue
        wait = deadline - now
        if interval:
            wait = min(wait, quiet_since + interval - now)
        await requester.next_message(wait)


async def keep_open(client: Client, keepalive: float) -> None:
    """The watcher's keep-alive: a LIST_IMAGES of one entry every `keepalive` seconds, and a new
    connection when it closed (until cancelled)."""
    while True:
        await asyncio.sleep(keepalive if keepalive else 1.0)
        with contextlib.suppress(SmokeError):
            if client.closed:
                await client.reopen()
            elif keepalive:
                await client.send({"action": "LIST_IMAGES", "limit": 1})


async def run_job(steps: Steps, requester: Client, watcher: Client, style: str, private: bool, job_timeout: float,
                  keepalive: float, size: int = SIZE) -> dict[str, Any]:  # fmt: skip
    kind = "private" if private else "public"
    request = {"action": "TRANSFER_STYLE", "image": photo_data_url(), "style": style, "isPrivate": private,
               "options": {"preset": "preview", "size": size}}  # fmt: skip
    sent = time.monotonic()
    async with steps.step(f"{kind} job: accepted"):
        accepted = await requester.ask(request, "TRANSFER_STYLE_ACCEPTED")
    accepted_at = time.monotonic()
    job = Followed(accepted["jobId"], accepted["jobToken"], sent)
    watcher_opened = watcher.opened_at
    try:
        await follow(requester, job, job_timeout, keepalive)
    except SmokeError as failure:
        print(f"  {kind + ' job: result':<44} FAILED after {time.monotonic() - sent:.1f} s: {failure}", file=steps.out)
        raise
    # each phase: how long after the one before it (from the acceptance), and when after sending
    previous = accepted_at
    for phase, at in (("preview", job.preview), ("first progress", job.first_progress), ("result", job.ended)):
        name = f"{kind} job: {phase}"
        if at is None:
            steps.missing(name, "the job went on without one" if phase == "preview" else "the job sent none")
            continue
        note = f"at {at - sent:.2f} s" + (f"; {job.progress_events} progress events" if phase == "result" else "")
        steps.record(name, max(0.0, at - previous), note)
        previous = at
    if job.error is not None:
        raise SmokeError(f"the job failed: {job.error}")
    if job.result is None:
        raise SmokeError("the job succeeded without a result URL")
    async with steps.step(f"{kind} job: result fetched") as note:
        body = await asyncio.to_thread(fetch, job.result)
        note.append(f"{len(body) / 1024:.1f} KiB JPEG")
    if not private:
        await check_broadcast(steps, watcher, job, watcher_opened)
    return {"jobId": job.job_id, "jobToken": job.token, "result": job.result}


async def check_broadcast(steps: Steps, watcher: Client, job: Followed, watcher_opened: float) -> None:
    """The watcher's broadcast of the job, and when it came after the requester's result. A watcher
    whose connection was replaced while the job ran may have been away when it went out: then the
    job must be in the Feed (LIST_IMAGES) instead."""
    name = "public job: broadcast to the watcher"

    def broadcast(message: dict[str, Any]) -> bool:
        return message.get("event") == "TRANSFER_STYLE_COMPLETED" and message["data"].get("jobId") == job.job_id

    try:
        if not any(broadcast(m) for m in watcher.seen) and watcher.opened_at == watcher_opened:
            await watcher.wait_for("the broadcast", broadcast, 60)
    except SmokeError as failure:
        if watcher.opened_at == watcher_opened and not watcher.closed:
            print(f"  {name:<44} FAILED: {failure}", file=steps.out, flush=True)
            raise
    found = [at for m, at in zip(watcher.seen, watcher.arrived_at, strict=True) if broadcast(m)]
    if found:
        steps.record(name, max(0.0, found[0] - (job.ended or job.sent)), "after the result")
        return
    async with steps.step(name) as note:
        images = (await watcher.ask({"action": "LIST_IMAGES", "limit": 20}, "IMAGES"))["images"]
        if not any(image.get("jobId") == job.job_id for image in images):
            raise SmokeError("the watcher reconnected meanwhile, and the job is not in the Feed either")
        note.append("the watcher's connection was replaced while the job ran: found in the Feed instead")


async def smoke(url: str, *, key: str | None = None, style: str | None = None, job_timeout: float = 900,
                keepalive: float = KEEPALIVE_SECONDS, size: int = SIZE, out: TextIO) -> dict[str, float]:  # fmt: skip
    """Runs every step; raises SmokeError at the first that fails. Each step's seconds."""
    steps = Steps(out)
    print(f"smoke test of {url}", file=out, flush=True)
    started = time.monotonic()
    async with steps.step("connect (requester and watcher)"):
        requester = await Client.connect(with_key(url, key))
        watcher = await Client.connect(with_key(url, key))
    keeping = asyncio.create_task(keep_open(watcher, keepalive))
    try:
        async with steps.step("LIST_STYLES") as note:
            styles = [s["name"] for s in (await requester.ask({"action": "LIST_STYLES"}, "STYLES"))["styles"]]
            if not styles:
                raise SmokeError("the catalogue is empty: `make deploy` uploads it")
            chosen = style or styles[0]
            if chosen not in styles:
                raise SmokeError(f"no style {chosen!r} in the catalogue {styles}")
            note.append(f"{len(styles)} styles; using {chosen}")
        await run_job(steps, requester, watcher, chosen, False, job_timeout, keepalive, size)
        private = await run_job(steps, requester, watcher, chosen, True, job_timeout, keepalive, size)
        async with steps.step("GET_JOB of the private job") as note:
            job = await requester.ask(
                {"action": "GET_JOB", "jobId": private["jobId"], "jobToken": private["jobToken"]}, "JOB"
            )
            if job.get("status") != "SUCCEEDED":
                raise SmokeError(f"GET_JOB says {job.get('status')}")
            note.append("SUCCEEDED")
        async with steps.step("the private job was not broadcast"):
            await asyncio.sleep(1)  # time for a broadcast that should not come
            leaked = [m for m in watcher.seen if private["jobId"] in json.dumps(m)]
            if leaked:
                raise SmokeError(f"the watcher saw the private job: {leaked[0].get('event')}")
    finally:
        keeping.cancel()
        await requester.close()
        await watcher.close()
    reconnects = requester.reconnects + watcher.reconnects
    again = f" ({reconnects} reconnection{'s' if reconnects != 1 else ''})" if reconnects else ""
    print(f"smoke test passed in {time.monotonic() - started:.1f} s{again}", file=out, flush=True)
    return steps.times
