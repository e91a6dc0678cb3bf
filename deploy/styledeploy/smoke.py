"""`make smoke`: a real WebSocket client against a running stack (deployed, or `make up`), step by
step, each step timed: connect two clients (a requester and a watcher), LIST_STYLES, a small public
job (accepted, progress, completed, the result fetched over HTTPS, the broadcast seen by the
watcher), a small private job (the same, its presigned result fetched, GET_JOB with its token, and
never broadcast). Any step that fails stops the run with the reason, and the exit status is 1."""

from __future__ import annotations

import asyncio
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

JOB_OPTIONS = {"preset": "preview", "size": 64}  # the smallest job: a smoke test, not a benchmark
JPEG_MAGIC = b"\xff\xd8\xff"


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
    import base64

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
    """One connection: every message it receives is kept, and can be waited for."""

    ws: Any
    seen: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str) -> Client:
        try:
            ws = await websockets.connect(url, open_timeout=30, max_size=2**20)
        except websockets.InvalidStatus as refused:
            status = refused.response.status_code
            hint = " (the stack has an access key: pass --key)" if status in (401, 403) else ""
            raise SmokeError(f"the connection was refused with HTTP {status}{hint}") from None
        client = cls(ws)
        client.reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.seen.append(json.loads(raw))
                self.arrived.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

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
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    async def ask(self, message: dict[str, Any], answer: str, timeout: float = 30) -> dict[str, Any]:
        """Sends a request and waits for its answer (or its ERROR, which fails the step)."""
        start = len(self.seen)
        await self.send(message)
        reply = await self.wait_for(message["action"], lambda m: m.get("event") in (answer, "ERROR"), timeout, start)
        if reply["event"] == "ERROR":
            raise SmokeError(f"{message['action']} was refused: {reply['data'].get('message')}")
        return reply["data"]

    async def close(self) -> None:
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

    @contextlib.asynccontextmanager
    async def step(self, name: str):
        started = time.monotonic()
        note: list[str] = []
        try:
            yield note
        except SmokeError as failure:
            print(f"  {name:<44} FAILED after {time.monotonic() - started:.1f} s: {failure}", file=self.out, flush=True)
            raise
        seconds = time.monotonic() - started
        self.times[name] = seconds
        detail = f"  ({'; '.join(note)})" if note else ""
        print(f"  {name:<44} {seconds:7.2f} s{detail}", file=self.out, flush=True)


async def run_job(steps: Steps, requester: Client, watcher: Client, style: str, private: bool,
                  job_timeout: float) -> dict[str, Any]:  # fmt: skip
    kind = "private" if private else "public"
    request = {"action": "TRANSFER_STYLE", "image": photo_data_url(), "style": style, "isPrivate": private,
               "options": JOB_OPTIONS}  # fmt: skip
    async with steps.step(f"{kind} job accepted"):
        job = await requester.ask(request, "TRANSFER_STYLE_ACCEPTED")
    job_id = job["jobId"]
    async with steps.step(f"{kind} job completed") as note:
        done = await requester.wait_for(
            f"the {kind} job's result",
            lambda m: m.get("event") in (f"TRANSFER_STYLE_COMPLETED::{job_id}", f"TRANSFER_STYLE_FAILED::{job_id}"),
            job_timeout,
        )
        if done["event"].startswith("TRANSFER_STYLE_FAILED"):
            raise SmokeError(f"the job failed: {done['data'].get('error')}")
        progress = sum(m.get("event") == f"TRANSFER_STYLE_PROGRESS::{job_id}" for m in requester.seen)
        note.append(f"{progress} progress events")
    async with steps.step(f"{kind} result fetched") as note:
        body = await asyncio.to_thread(fetch, done["data"]["result"])
        note.append(f"{len(body) / 1024:.1f} KiB JPEG")
    if not private:
        async with steps.step("public result broadcast to the watcher"):
            await watcher.wait_for(
                "the broadcast",
                lambda m: m.get("event") == "TRANSFER_STYLE_COMPLETED" and m["data"].get("jobId") == job_id,
                60,
            )
    return {**job, "result": done["data"]["result"]}


async def smoke(url: str, *, key: str | None = None, style: str | None = None, job_timeout: float = 900,
                out: TextIO) -> dict[str, float]:  # fmt: skip
    """Runs every step; raises SmokeError at the first that fails. Each step's seconds."""
    steps = Steps(out)
    print(f"smoke test of {url}", file=out, flush=True)
    started = time.monotonic()
    async with steps.step("connect (requester and watcher)"):
        requester = await Client.connect(with_key(url, key))
        watcher = await Client.connect(with_key(url, key))
    try:
        async with steps.step("LIST_STYLES") as note:
            styles = [s["name"] for s in (await requester.ask({"action": "LIST_STYLES"}, "STYLES"))["styles"]]
            if not styles:
                raise SmokeError("the catalogue is empty: `make deploy` uploads it")
            chosen = style or styles[0]
            if chosen not in styles:
                raise SmokeError(f"no style {chosen!r} in the catalogue {styles}")
            note.append(f"{len(styles)} styles; using {chosen}")
        await run_job(steps, requester, watcher, chosen, False, job_timeout)
        private = await run_job(steps, requester, watcher, chosen, True, job_timeout)
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
        await requester.close()
        await watcher.close()
    print(f"smoke test passed in {time.monotonic() - started:.1f} s", file=out, flush=True)
    return steps.times
