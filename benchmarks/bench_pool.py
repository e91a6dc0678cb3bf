"""The pool of warm workers as a user meets it: the local stack, real WebSocket clients, job after
job, then a burst.

    python benchmarks/bench_pool.py [--jobs 6] [--burst 3] [--size 64] [--preset preview]
                                    [--workers N] [--parameter NAME=VALUE]... [--json FILE]

Starts the local stack as users do (`python -m stylelocal --device cpu`, a subprocess; --workers,
--parameter and --device are passed to it) and sends scikit-image's cat photo (451x300, inline as
the page sends small photos) with the catalogue's The Starry Night:

1. `--jobs` jobs one after another from one client: for each, the seconds from sending
   TRANSFER_STYLE to TRANSFER_STYLE_COMPLETED, and on the way ACCEPTED, the instant PREVIEW and the
   first PROGRESS. The stack's log is read as it is written, so the worker's line for the job
   (received to answered, its optimisation) is stamped when it appears: that splits the job into
   its way to the worker (the route, the state machine, EnsureWorker, the work queue; for the
   first job, a worker's start), the worker's own time, and the way back (the results queue, the
   notifier, the push). The first job starts the pool's first worker (its "ready" line says how
   long that took); the later ones find it warm. The first is set against the median of the rest:
   the target is a later job at most 0.6x as long as the first;
2. `--burst` jobs sent at once from as many clients, each one's seconds to its result, and how
   many workers served them (MaxWorkers and --workers bound it; on a CPU the stack runs one).

The per-connection and per-address job limits are lifted (JobsPerConnection=0, JobsPerSourceIp=0)
unless --parameter sets them: they are there for strangers, not for a benchmark.

Printed with the CPU (model, AVX-512) and the date; each job's row as soon as it is measured.
Figures are printed, never asserted: a timing depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import functools
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.local.stack_process import Running, photo_png  # noqa: E402 - the stack as users start it

STYLE = "starry-night"
TARGET_RATIO = 0.6  # a later job's seconds at most this share of the first's (64 px, one client, a 2-core CPU)
DEFAULT_PARAMETERS = ("JobsPerConnection=0", "JobsPerSourceIp=0")
READY, JOB = "stylize-worker ready", "stylize-worker job"


def photo() -> str:
    """scikit-image's cat as a JPEG data URL of at most 22 KB (the page sends photos that small
    inline: API Gateway's frames are 32 KB); a drawn photo where scikit-image is missing."""
    try:
        from skimage import data

        picture = Image.fromarray(data.chelsea())
    except ImportError:
        picture = Image.open(io.BytesIO(photo_png(451, 300))).convert("RGB")
    for quality in (85, 75, 65, 55):
        encoded = io.BytesIO()
        picture.save(encoded, format="JPEG", quality=quality)
        if encoded.tell() <= 22 * 1024:
            break
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


@dataclass
class Timed:
    """One job as its client saw it (seconds from sending) and as the worker logged it."""

    job_id: str
    outcome: str  # "completed", or the failure's event and reason
    sent_at: float  # perf_counter() when it was sent
    result: float  # sending to COMPLETED (or FAILED)
    accepted: float | None
    preview: float | None
    first_progress: float | None
    worker: float | None = None  # the worker's job line: received to answered
    worker_id: str | None = None
    optimisation: float | None = None
    to_worker: float | None = None  # sending to the worker's receiving it
    # the worker's line to COMPLETED at the client: a little below zero when the push outruns the
    # worker's last steps (it sends "completed" before it answers the task and collects garbage)
    from_worker: float | None = None


class Client:
    """One WebSocket connection, as the page keeps one; messages read with their arrival time."""

    def __init__(self, ws_url: str) -> None:
        self._resources = contextlib.ExitStack()  # websockets wants its connections entered
        # no pings, as a browser sends none: a stack slowed by a burst must not look like a dead peer
        self.ws: ClientConnection = self._resources.enter_context(connect(ws_url, max_size=None, ping_interval=None))

    def job(self, image: str, options: dict[str, Any], timeout: float) -> Timed:
        request = {"action": "TRANSFER_STYLE", "image": image, "style": STYLE, "isPrivate": True, "options": options}
        sent = time.perf_counter()
        self.ws.send(json.dumps(request))
        timed = functools.partial(Timed, sent_at=sent)
        seen: dict[str, float] = {}
        job_id = ""
        deadline = sent + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return timed(
                    job_id, f"no result within {timeout:.0f} s", result=time.perf_counter() - sent, **_marks(seen)
                )
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            at = time.perf_counter() - sent
            event, _, about = message["event"].partition("::")
            if event == "ERROR":
                return timed(job_id, f"ERROR {message.get('data')}", result=at, **_marks(seen))
            if event == "TRANSFER_STYLE_ACCEPTED" and not job_id:
                job_id = message["data"]["jobId"]
                seen["accepted"] = at
            elif about and about == job_id:
                seen.setdefault(event, at)
                if event == "TRANSFER_STYLE_COMPLETED":
                    return timed(job_id, "completed", result=at, **_marks(seen))
                if event == "TRANSFER_STYLE_FAILED":
                    return timed(job_id, f"FAILED {message.get('data')}", result=at, **_marks(seen))

    def close(self) -> None:
        self._resources.close()


def _marks(seen: dict[str, float]) -> dict[str, float | None]:
    return {
        "accepted": seen.get("accepted"),
        "preview": seen.get("TRANSFER_STYLE_PREVIEW"),
        "first_progress": seen.get("TRANSFER_STYLE_PROGRESS"),
    }


class LogTail:
    """The stack's log read as it is written (every POLL_SECONDS): the workers' JSON lines (the
    stack logs them under their Batch job), each with when it appeared (perf_counter)."""

    POLL_SECONDS = 0.02

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-tail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.path.open("rb") as log:
            pending = b""
            while not self._stop.is_set():
                chunk = log.read()
                if not chunk:
                    time.sleep(self.POLL_SECONDS)
                    continue
                at = time.perf_counter()
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    _, bracket, rest = raw.decode(errors="replace").partition("] {")
                    if bracket and '"message": "stylize-worker' in rest:
                        with contextlib.suppress(ValueError), self._lock:
                            self.lines.append((at, json.loads("{" + rest)))

    def found(self, message: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(at, line) for at, line in self.lines if line.get("message") == message]

    def job_line(self, job_id: str, wait: float) -> tuple[float, dict[str, Any]] | None:
        """The worker's line for this job and when it appeared; it comes just after the worker's
        answer, so the client may see the result a moment before it."""
        deadline = time.monotonic() + wait
        while True:
            found = next(((at, line) for at, line in self.found(JOB) if line.get("jobId") == job_id), None)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(self.POLL_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def attach_worker_line(tail: LogTail, job: Timed, wait: float = 10) -> None:
    """The worker's own figures for the job, and the job split at the worker: sending to the
    worker's receiving it (its line's time less its seconds), and its line to the result."""
    if not job.job_id or (found := tail.job_line(job.job_id, wait)) is None:
        return
    at, line = found
    appeared = at - job.sent_at
    job.worker, job.worker_id = line["seconds"], line["workerId"]
    job.optimisation = line.get("phases", {}).get("optimisation")
    job.to_worker = appeared - line["seconds"]
    job.from_worker = job.result - appeared


def cpu_description() -> dict[str, Any]:
    """The CPU's model name and flags that decide the engine's CPU path, the cores, the load."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model.startswith(value.strip()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "cores": cores,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,  # the engine paints in bf16 on a CPU that has it
        "loadAverage": [round(load, 2) for load in os.getloadavg()],
    }


def commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


def _seconds(value: float | None, width: int = 8) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


COLUMNS = ("result", "accepted", "preview", "progress", "to worker", "worker", "optimised", "from worker")
HEADER = f"{'job':<6}" + "".join(f"{name:>12}" for name in COLUMNS)


def print_row(label: str, job: Timed) -> None:
    cells = (job.result, job.accepted, job.preview, job.first_progress, job.to_worker, job.worker,
             job.optimisation, job.from_worker)  # fmt: skip
    note = "" if job.outcome == "completed" else f"  {job.outcome}"
    print(f"{label:<6}" + "".join(_seconds(cell, 12) for cell in cells) + note, flush=True)


def sequential(
    stack: Running, tail: LogTail, image: str, options: dict[str, Any], count: int, timeout: float
) -> list[Timed]:
    client = Client(stack.ws_url)
    timed = []
    try:
        for number in range(1, count + 1):
            job = client.job(image, options, timeout)
            attach_worker_line(tail, job)
            timed.append(job)
            print_row(f"{number}", job)
            if job.outcome != "completed":
                break  # the pool is not working: the next would only wait as long
    finally:
        client.close()
    return timed


def burst(
    stack: Running, tail: LogTail, image: str, options: dict[str, Any], count: int, timeout: float
) -> list[Timed]:
    """`count` clients, connected first, each sending its job at the same moment."""
    clients = [Client(stack.ws_url) for _ in range(count)]
    start = threading.Barrier(count)
    timed: list[Timed | None] = [None] * count

    def one(index: int) -> None:
        start.wait()
        timed[index] = clients[index].job(image, options, timeout)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    done = [job for job in timed if job is not None]
    for job in done:
        attach_worker_line(tail, job)
    return done


def first_against_rest(timed: list[Timed]) -> dict[str, Any] | None:
    done = [job for job in timed if job.outcome == "completed"]
    if len(done) < 2 or done[0] is not timed[0]:
        return None
    rest = statistics.median(job.result for job in done[1:])
    ratio = rest / done[0].result
    return {"first": round(done[0].result, 3), "restMedian": round(rest, 3), "ratio": round(ratio, 3),
            "target": TARGET_RATIO, "met": ratio <= TARGET_RATIO}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6, help="jobs one after another from one client (default 6)")
    parser.add_argument("--burst", type=int, default=3, help="jobs at once from as many clients (default 3; 0: none)")
    parser.add_argument("--size", type=int, default=64, help="px, the result's long side (default 64)")
    parser.add_argument("--preset", default="preview", choices=["auto", "preview", "standard", "high"])
    parser.add_argument("--workers", type=int, help="passed to python -m stylelocal (workers that may run at once)")
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="NAME=VALUE", help="a template parameter for the stack"
    )
    parser.add_argument("--device", default="cpu", help="passed to python -m stylelocal (default cpu)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a job may take (default 600)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    options = {"preset": args.preset, "size": args.size}
    stack_args = ["--device", args.device]
    if args.workers is not None:
        stack_args += ["--workers", str(args.workers)]
    for parameter in [*DEFAULT_PARAMETERS, *args.parameter]:  # later ones win: the caller's
        stack_args += ["--parameter", parameter]

    cpu = cpu_description()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"date: {now}; commit {commit() or 'unknown'}")
    print(
        f"cpu: {cpu['model']}, {cpu['cores']} cores; avx512f: {'yes' if cpu['avx512f'] else 'no'}, "
        f"avx512_bf16: {'yes' if cpu['avx512_bf16'] else 'no'}; load average {' '.join(map(str, cpu['loadAverage']))}"
    )
    print(f"jobs: {args.preset} at {args.size} px; stack: python -m stylelocal {' '.join(stack_args)}", flush=True)
    image = photo()
    figures: dict[str, Any] = {"date": now, "commit": commit(), "cpu": cpu, "options": options, "stack": stack_args}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        stack = Running(Path(tmp), args=tuple(stack_args))
        figures["stackStart"] = round(time.perf_counter() - started, 3)
        print(f"stack up in {figures['stackStart']:.1f} s")
        tail = LogTail(stack.log)
        try:
            print(f"\n{args.jobs} jobs one after another, one client; seconds from sending:\n{HEADER}", flush=True)
            timed = sequential(stack, tail, image, options, args.jobs, args.timeout)
            burst_timed: list[Timed] = []
            if args.burst > 0:
                print(f"\n{args.burst} jobs at once from {args.burst} clients; seconds from sending:\n{HEADER}")
                burst_timed = burst(stack, tail, image, options, args.burst, args.timeout)
                for number, job in enumerate(burst_timed, 1):
                    print_row(f"{number}", job)
            ready = [line for _, line in tail.found(READY)]
        finally:
            tail.stop()
            stack.stop()
        log_copy = stack.log.read_text(errors="replace") if args.json else ""

    print()
    for line in ready:
        phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in line["phases"].items())
        print(f"a worker started: ready {line['total']:.2f} s after its process started ({phases})")
    print(where_the_time_goes(timed))
    compared = first_against_rest(timed)
    if compared:
        print(
            f"first job {compared['first']:.2f} s, the rest's median {compared['restMedian']:.2f} s: "
            f"{compared['ratio']:.2f}x the first (target at most {TARGET_RATIO}x: "
            f"{'met' if compared['met'] else 'missed'})"
        )
    else:
        print("first against the rest: not measured (fewer than two jobs completed)")
    served = {job.worker_id for job in burst_timed if job.worker_id}
    if burst_timed:
        results = ", ".join(f"{job.result:.2f}" for job in burst_timed)
        print(f"burst: {len(burst_timed)} jobs at once, {results} s; served by {len(served)} worker(s)")
    failed = [job for job in timed + burst_timed if job.outcome != "completed"]
    if args.json:
        figures |= {
            "sequential": [asdict(job) for job in timed],
            "firstAgainstRest": compared,
            "burst": [asdict(job) for job in burst_timed],
            "burstWorkers": len(served),
            "workersStarted": ready,
            "failed": [job.outcome for job in failed],
        }
        args.json.write_text(json.dumps(figures, indent=1))
        # the stack's log beside it: where a job's time went, line by line
        args.json.with_suffix(".log").write_text(log_copy)
    return 1 if failed or len(timed) < args.jobs else 0


def where_the_time_goes(timed: list[Timed]) -> str:
    """The first job, and the medians of the rest, split at the worker."""
    done = [job for job in timed if job.outcome == "completed" and job.worker is not None]
    if not done:
        return "where the time went: not measured (no job with its worker's line)"

    def split(jobs: list[Timed]) -> str:
        def med(values: list[float | None]) -> float:
            return statistics.median(value for value in values if value is not None)

        return (
            f"{med([j.result for j in jobs]):.2f} s: to the worker {med([j.to_worker for j in jobs]):.2f} "
            f"(ACCEPTED at {med([j.accepted for j in jobs]):.2f}), in the worker {med([j.worker for j in jobs]):.2f} "
            f"(optimisation {med([j.optimisation for j in jobs]):.2f}), back to the client "
            f"{med([j.from_worker for j in jobs]):.2f}"
        )

    first, rest = (done[:1], done[1:]) if done[0] is timed[0] else ([], done)
    lines = [f"where the time went, job 1: {split(first)}"] if first else []
    if rest:
        lines.append(f"where the time went, the later jobs (medians of each part): {split(rest)}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
