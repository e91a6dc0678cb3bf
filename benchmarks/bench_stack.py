"""Local stack under load: many WebSocket clients against the local gateway, the template's real
functions and moto, all on this machine (loopback only).

    python benchmarks/bench_stack.py [--clients 200] [--timeout 300]

In this process: moto with the template's resources and the style catalogue, the Lambda runtime,
the gateway and the results queue's event source (stylelocal). In a second process (so that the
clients do not share the stack's interpreter lock): the clients. It measures

1. connect: `--clients` connections opened at once; each one's time from the TCP connect to the
   open WebSocket (the handshake waits for the real ConnectFunction, as API Gateway's $connect);
2. broadcast: a public job is seeded and a "completed" message put on the results queue, as the
   worker does; for each client, the time from that send until it received the public
   TRANSFER_STYLE_COMPLETED (SQS poll, the mapping's batching window (0 s), the real
   NotifyFunction scanning the connections and posting to each through @connections);
3. requests: LIST_STYLES round trips while every client stays connected: all clients at once,
   then one client alone, one request after the other.

Functions are warmed up before measuring (the table shows how long that took): the figures are
a warm stack's. It stops by itself: every phase has a time limit, and a watchdog ends the process
after --timeout seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import sys
import threading
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHASE_SECONDS = 120.0
LIST_STYLES = json.dumps({"action": "LIST_STYLES"})
SEQUENTIAL_REQUESTS = 50


# --- the clients' process --------------------------------------------------------------------------


def clients_main(pipe: Connection, url: str, count: int) -> None:
    asyncio.run(_clients(pipe, url, count))


async def _receive(pipe: Connection) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


async def _clients(pipe: Connection, url: str, count: int) -> None:
    from websockets.asyncio.client import connect

    async def open_one() -> tuple[Any, float]:
        started = time.monotonic()
        ws = await connect(url, open_timeout=PHASE_SECONDS, compression=None, ping_interval=None, max_size=2**20)
        return ws, time.monotonic() - started

    opened = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
    sockets = [result[0] for result in opened if not isinstance(result, BaseException)]
    failures = [repr(result) for result in opened if isinstance(result, BaseException)]
    pipe.send(("connected", [result[1] for result in opened if not isinstance(result, BaseException)], failures))

    # broadcast: the time from the parent's send (t0, a system-wide monotonic clock) to each receipt
    _, t0 = await _receive(pipe)

    async def broadcast_received(ws: Any) -> float:
        while True:
            message = json.loads(await ws.recv())
            if message.get("event") == "TRANSFER_STYLE_COMPLETED":  # the public broadcast
                return time.monotonic() - t0

    tasks = [asyncio.create_task(broadcast_received(ws)) for ws in sockets]
    done, pending = await asyncio.wait(tasks, timeout=PHASE_SECONDS)
    for task in pending:
        task.cancel()
    pipe.send(("broadcast", [task.result() for task in done if task.exception() is None], len(pending)))

    await _receive(pipe)

    async def round_trip(ws: Any) -> float:
        started = time.monotonic()
        await ws.send(LIST_STYLES)
        while True:
            message = json.loads(await ws.recv())
            if message.get("event") in ("STYLES", "ERROR") or "message" in message:
                return time.monotonic() - started

    burst = await asyncio.wait_for(asyncio.gather(*(round_trip(ws) for ws in sockets)), PHASE_SECONDS)
    alone = [await asyncio.wait_for(round_trip(sockets[0]), 30) for _ in range(SEQUENTIAL_REQUESTS)]
    pipe.send(("requests", burst, alone))

    await _receive(pipe)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    pipe.send(("closed",))


# --- the stack's process ---------------------------------------------------------------------------


class Durations:
    """A LambdaRuntime log sink keeping the REPORT durations (ms) of the functions' invocations."""

    PATTERN = re.compile(r"^REPORT RequestId: \S+\tDuration: ([0-9.]+) ms")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_function: dict[str, list[float]] = {}

    def __call__(self, function: str, line: str) -> None:
        if match := self.PATTERN.match(line):
            with self.lock:
                self.by_function.setdefault(function, []).append(float(match.group(1)))


def expect(pipe: Connection, kind: str) -> tuple[Any, ...]:
    if not pipe.poll(PHASE_SECONDS + 10):
        raise TimeoutError(f"the clients did not report {kind!r} in time")
    message = pipe.recv()
    if message[0] != kind:
        raise RuntimeError(f"the clients reported {message[0]!r}, expected {kind!r}")
    return message


def percentiles(seconds: list[float]) -> tuple[str, str, str, str]:
    if not seconds:
        return ("-", "-", "-", "0")
    ordered = sorted(seconds)

    def at(q: float) -> str:
        return f"{ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000:.0f}"

    return at(0.5), at(0.95), f"{ordered[-1] * 1000:.0f}", str(len(ordered))


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run(clients: int) -> list[tuple[str, tuple[str, str, str, str]]]:
    sys.path.insert(0, str(ROOT / "layers" / "common"))  # styleservice, to seed a job as TRANSFER_STYLE does
    from stylelocal.aws import FAKE_CREDENTIALS, LocalAws, start_moto
    from stylelocal.catalogue import seed_styles
    from stylelocal.event_source import SqsEventSource
    from stylelocal.gateway import Gateway
    from stylelocal.lambdas import LambdaRuntime

    os.environ.update({**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"})
    rows: list[tuple[str, tuple[str, str, str, str]]] = []
    moto = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = moto.endpoint
    durations = Durations()
    runtime = gateway = source = process = None
    try:
        started = time.monotonic()
        aws = LocalAws(moto.endpoint).create()
        styles = seed_styles(aws)
        print(f"moto and the template's resources, {len(styles)} styles: {time.monotonic() - started:.1f} s")
        runtime = LambdaRuntime(aws, logs=durations)
        gateway = Gateway(runtime, web_dir=ROOT / "web").start_background()
        runtime.update_overrides({"WEBSOCKET_ENDPOINT": gateway.management_endpoint})
        started = time.monotonic()
        runtime.warm(["ConnectFunction", "DisconnectFunction", "ListStylesFunction"], count=runtime.max_concurrency)
        runtime.warm(["NotifyFunction"])
        print(f"warm-up (4 processes each of 3 functions, 1 of NotifyFunction): {time.monotonic() - started:.1f} s")
        source = SqsEventSource(runtime, aws).start()

        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=clients_main, args=(theirs, gateway.ws_url, clients), daemon=True)
        process.start()

        _, connect_times, failures = expect(ours, "connected")
        rows.append((f"connect ({len(connect_times)} of {clients} at once)", percentiles(connect_times)))
        if failures:
            print(f"{len(failures)} connections failed, e.g. {failures[0]}")
        if not wait_until(lambda: len(gateway.connection_ids()) >= len(connect_times), 30):
            raise TimeoutError("the gateway does not count every client")

        from styleservice.jobs import Jobs

        job_id = uuid.uuid4().hex
        Jobs(aws.refs["JobsTable"]).create(
            {
                "jobId": job_id,
                "connectionId": gateway.connection_ids()[0],
                "tokenHash": "0" * 64,
                "isPrivate": False,
                "inputKey": f"public/input/{job_id}.jpg",
                "style": "swirls",
                "styleKey": "styles/swirls.jpg",
                "outputKey": f"public/output/{job_id}.jpg",
                "options": {"preset": "preview", "size": None, "strength": 0.5},
            }
        )
        completed = {"type": "completed", "requestId": job_id, "resultKey": f"public/output/{job_id}.jpg"}
        sqs = aws.client("sqs")
        t0 = time.monotonic()
        sqs.send_message(QueueUrl=aws.refs["ResultsQueue"], MessageBody=json.dumps(completed))
        ours.send(("broadcast", t0))
        _, latencies, missing = expect(ours, "broadcast")
        label = f"broadcast: queue -> client ({len(latencies)} of {len(connect_times)} reached)"
        rows.append((label, percentiles(latencies)))
        if missing:
            print(f"{missing} clients never received the broadcast")
        # the clients have the broadcast before the invocation's end is logged
        wait_until(lambda: durations.by_function.get("NotifyFunction"), 30)
        notify = [d / 1000 for d in durations.by_function.get("NotifyFunction", [])]
        rows.append(("  of which NotifyFunction's invocation", percentiles(notify)))

        ours.send(("requests",))
        _, burst, alone = expect(ours, "requests")
        rows.append((f"LIST_STYLES round trip, {len(burst)} clients at once", percentiles(burst)))
        rows.append((f"LIST_STYLES round trip, one client, {len(connect_times)} connected", percentiles(alone)))
        list_styles = [d / 1000 for d in durations.by_function.get("ListStylesFunction", [])]
        rows.append(("  ListStylesFunction's invocations", percentiles(list_styles)))

        ours.send(("close",))
        expect(ours, "closed")
        wait_until(lambda: not gateway.connection_ids(), 30)
    finally:
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.terminate()
        if source is not None:
            source.stop()
        if gateway is not None:
            gateway.stop_background()
        if runtime is not None:
            runtime.close()
        moto.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="WebSocket clients (default 200)")
    parser.add_argument("--timeout", type=float, default=300, help="stop after this many seconds whatever happens")
    args = parser.parse_args(argv)

    def give_up() -> None:
        print(f"bench_stack: still running after {args.timeout:.0f} s: stopped", file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(args.timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, {args.clients} clients")
    rows = run(args.clients)
    watchdog.cancel()
    width = max(len(label) for label, _ in rows)
    print()
    print(f"| {'measure':<{width}} | p50 ms | p95 ms | max ms |     n |")
    print(f"| {'-' * width} | -----: | -----: | -----: | ----: |")
    for label, (p50, p95, worst, n) in rows:
        print(f"| {label:<{width}} | {p50:>6} | {p95:>6} | {worst:>6} | {n:>5} |")
    print()
    print("broadcast includes the event source mapping's MaximumBatchingWindowInSeconds (template.yaml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
