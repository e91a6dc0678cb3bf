"""One warm worker of the pool, job after job: `python -m stylize_worker` against moto, driven with
real task tokens by the paint-only state machine (stylelocal.paint_only).

    python benchmarks/bench_worker.py [--sizes 512 1024 2048] [--preset standard] [--repeat 3]
                                      [--mixed 50] [--mixed-sizes 256 384 512 768] [--device auto]
                                      [--json FILE]

In this process: a moto server holding the template's resources (stylelocal: `start_moto`,
`LocalAws.create()`), the catalogue's swirls as the style, and scikit-image's chelsea photo (the
project's swirls when scikit-image is missing) as every job's photo. Then one worker process, with
the environment the scaler gives it (the job definition's variables, its WORKER_ID reserved in the
pool's table, moto's endpoint, fake credentials, CUDA_VISIBLE_DEVICES; none of the host's AWS_*).
The worker is started first and the benchmark waits for its "ready" line: the cold start.

Then, one job at a time (each is an execution of the paint-only machine, whose task puts the job
and its token on the work queue; the next is started once the worker has answered the last):

1. `--repeat` jobs at each of `--sizes` with `--preset`: the first at a size meets that size for
   the first time in this process (on a GPU the start-up warmed 512 and 1024 px up already), the
   rest are warm. Per size: the first job, the median of the warm ones and their phases, each
   from the worker's own "stylize-worker job" line (received to answered: the message taken off
   the queue to SendTaskSuccess), and the round trip seen from here (the execution started to the
   worker's line), which adds the state machine's send and the queue's delivery;
2. `--mixed` jobs of mixed sizes (`--mixed-sizes`), presets (`preview`, and `standard` every
   third round of sizes) and options (strength, preserveColors, styleScale, seed), for memory: the
   process's resident memory after each job (residentMiB) and the GPU's peak during each
   (gpuPeakMiB): the first, after the first few, the largest and the last, and the growth after
   the first few (what they cached stays; a leak keeps growing). The mix repeats itself after
   three rounds of sizes, so the same job is seen early and late: its GPU peak should not grow.

The targets (a warm `standard` job, received to answered, on an H100): 512 px at most 2.0 s,
1024 px at most 6 s; printed as met, missed, not measured (no warm job at that size), or not
applicable (a CPU, or another preset).

Figures are printed and, with --json, written after every job, so a run stopped by a time limit
keeps what it measured. A job that fails is reported and the others go on; a worker that dies
ends the run; either way the exit status is 1.

--device: the worker has no option for the device (the engine picks CUDA when it is visible), so
`cpu` runs it with CUDA_VISIBLE_DEVICES="" and `cuda:N` with GPU N alone visible, as the local
Batch runner does; `auto` leaves the host's CUDA_VISIBLE_DEVICES as it is.

Caveats: S3, SQS, DynamoDB and Step Functions are moto on loopback, not AWS; this process has
imported torch already, so the worker's `imports` are a warm file cache's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from stylejob.job import MAX_SIZE, MIN_SIZE, Job, JobOptions
from stylelocal.aws import FAKE_CREDENTIALS, LocalAws, start_moto
from stylelocal.batch import container_environment
from stylelocal.catalogue import jpeg, style_key
from stylelocal.paint_only import PaintOnly
from stylelocal.template import ROOT
from styletransfer.samples import benchmark_pair
from workerpool import Registry, new_worker_id

READY, JOB, LEAVING = "stylize-worker ready", "stylize-worker job", "stylize-worker leaving"
PHASES = ("download", "decode", "optimisation", "encode_upload")
STYLE = "swirls"
# A warm `standard` job, received to answered, on an H100 (the issue "Warm GPU workers"): px -> s
TARGETS = {512: 2.0, 1024: 6.0}
TARGET_PRESET = "standard"
SETTLED_AFTER = 5  # mixed jobs: after these, what the first jobs cached stays; growth is counted from here
# The mixed jobs' options, one per job in turn (their size and preset come from the job's place)
MIXED_OPTIONS: tuple[dict[str, Any], ...] = (
    {},
    {"preserveColors": True},
    {"strength": 0.9, "styleScale": 1.5},
    {"strength": 0.2, "styleScale": 0.5, "seed": 7},
)
STANDARD_EVERY = 3  # mixed jobs: every third round of sizes is painted with `standard`, the rest `preview`


def mixed_options(index: int, sizes: list[int]) -> dict[str, Any]:
    """The index-th mixed job's options: `sizes` in turn, in rounds; `preview` in two rounds of
    three and `standard` in the third; MIXED_OPTIONS in turn, shifted by one each round, so that a
    size meets different options. It repeats after three rounds (12 jobs with 4 sizes)."""
    place, round_ = index % len(sizes), (index // len(sizes)) % STANDARD_EVERY
    preset = "standard" if round_ == STANDARD_EVERY - 1 else "preview"
    return {"preset": preset, "size": sizes[place], **MIXED_OPTIONS[(place + round_) % len(MIXED_OPTIONS)]}


class WorkerGoneError(Exception):
    """The worker process exited (or never came up) while the benchmark waited for it."""


class Worker:
    """`python -m stylize_worker` with its output read in a thread: its JSON lines kept in order,
    its other lines (a traceback, say) kept last for the report of a failure."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stylize_worker"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.other: deque[str] = deque(maxlen=60)
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="worker-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                record = _json(line)
                if record is not None:
                    self.lines.append(record)
                else:
                    self.other.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:  # the output ended: the process is gone or going
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first of its JSON lines that satisfies `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if predicate(line)), None)
                if found is not None:
                    return found
                if not self._reader.is_alive():
                    raise WorkerGoneError(f"the worker exited (status {self.process.wait()})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"nothing from the worker within {timeout:.0f} s")
                self._changed.wait(timeout=min(left, 1.0))

    def tail(self) -> str:
        return "\n".join(self.other)

    def stop(self) -> dict[str, Any] | None:
        """SIGTERM, as Batch stops a job: it leaves the pool and exits 0. Its "leaving" line."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return next((line for line in self.lines if line.get("message") == LEAVING), None)


def _json(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Bench:
    """moto with the template's resources, the paint-only machine, the images and the worker's
    environment."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.machine = PaintOnly(aws)
        self.s3 = aws.client("s3")
        self.bucket = aws.refs["ImagesBucket"]
        self.registry = Registry(aws.refs["WorkersTable"], aws.client("dynamodb"))
        content, style = benchmark_pair()
        self.content = jpeg(content)
        self.style_key = style_key(STYLE)
        self.s3.put_object(Bucket=self.bucket, Key=self.style_key, Body=jpeg(style), ContentType="image/jpeg")

    def worker_environment(self, cuda_visible: str | None) -> dict[str, str]:
        """What the scaler's Batch job gives the container (as stylelocal.batch.LocalBatch does), for
        a worker reserved in the pool's table, which stays up until it is stopped."""
        definition = self.aws.client("batch").describe_job_definitions(
            jobDefinitions=[self.aws.refs["WorkerJobDefinition"]]
        )["jobDefinitions"][0]
        worker_id = new_worker_id()
        if not self.registry.reserve(worker_id, desired=1, start_seconds=600):
            raise SystemExit("bench_worker: the pool's table refused the worker's reservation")
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(container_environment(definition["containerProperties"].get("environment") or []))
        env.update(
            {
                "WORKER_ID": worker_id,
                "WORKER_IDLE_SECONDS": "86400",  # the benchmark stops it; idle, it must not leave between jobs
                "AWS_ENDPOINT_URL": self.aws.endpoint,
                "AWS_DEFAULT_REGION": self.aws.region,
                **FAKE_CREDENTIALS,
                "PYTHONUNBUFFERED": "1",  # as the Dockerfile sets it
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT / "agent"), str(ROOT / "layers" / "common"), os.environ.get("PYTHONPATH")])
                ),
            }
        )
        if cuda_visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda_visible
        return env

    def new_job(self, options: dict[str, Any]) -> Job:
        job = Job.new(
            private=False,
            content_type="image/jpeg",
            style_key=self.style_key,
            options=JobOptions.model_validate(options),
        )
        self.s3.put_object(Bucket=self.bucket, Key=job.input_key, Body=self.content, ContentType="image/jpeg")
        return job

    def stored_result(self, key: str) -> str:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        image = Image.open(io.BytesIO(body))
        return f"{image.width}x{image.height} {image.format}, {len(body)} bytes"


@dataclass
class Done:
    """One job: its options, the worker's line for it, the round trip seen from here, the execution's end."""

    options: dict[str, Any]
    output_key: str
    line: dict[str, Any]
    round_trip: float
    status: str
    reason: str | None = None  # a failed execution's error and cause, as the user would be told

    @property
    def ok(self) -> bool:
        return self.line.get("outcome") == "succeeded" and self.status == "SUCCEEDED"

    def record(self) -> dict[str, Any]:
        return {"options": self.options, "roundTrip": round(self.round_trip, 3), "status": self.status, **self.line}


def run_job(bench: Bench, worker: Worker, options: dict[str, Any], timeout: float) -> Done:
    job = bench.new_job(options)
    started = time.perf_counter()
    arn = bench.machine.start(job.message())
    line = worker.wait_for(lambda record: record.get("message") == JOB and record.get("jobId") == job.job_id, timeout)
    round_trip = time.perf_counter() - started
    # the line comes after SendTaskSuccess/Failure: the execution ends at once
    execution = bench.machine.wait(arn, 30)
    reason = f"{execution['error']}: {execution.get('cause', '')}" if execution.get("error") else None
    return Done(options, job.output_key, line, round_trip, execution["status"], reason)


@dataclass
class Results:
    """Everything measured so far, as --json writes it (after every job)."""

    device: str
    cpu: str
    preset: str
    date: str
    ready: dict[str, Any] | None = None
    sizes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)  # size -> what the bucket holds for its last job
    mixed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    leaving: dict[str, Any] | None = None

    @property
    def device_type(self) -> str:
        """Where the worker paints, from its ready line ("cuda:0", "cpu"); before it, unknown."""
        device = (self.ready or {}).get("device") or ""
        return "cuda" if device.startswith("cuda") else "cpu" if device else "unknown"

    def figures(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "cpu": self.cpu,
            "date": self.date,
            "preset": self.preset,
            "ready": self.ready,
            "sizes": {size: size_figures(jobs) | {"jobs": jobs} for size, jobs in self.sizes.items()},
            "results": self.results,
            "mixed": {"jobs": self.mixed, "memory": memory(self.mixed)},
            "targets": targets(self),
            "failed": self.failed,
            "leaving": self.leaving,
        }


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def succeeded(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [job for job in jobs if job.get("outcome") == "succeeded" and job.get("status") == "SUCCEEDED"]


def size_figures(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first job that succeeded at a size, and the medians of the warm ones (the rest that
    succeeded): seconds received to answered, each phase, the time outside the phases (the claim,
    heartbeats, the answer), the round trip, each scale's setup and pace, and the GPU's largest peak."""
    done = succeeded(jobs)
    # a job that failed may have failed before it painted: the first painting at the size is the cold one
    first, warm = (done[0], done[1:]) if done else (None, [])
    figures: dict[str, Any] = {
        "first": first and {"seconds": first["seconds"], "roundTrip": first["roundTrip"], "phases": first["phases"]},
        "warmCount": len(warm),
        "warmSeconds": median([job["seconds"] for job in warm]),
        "warmRoundTrip": median([job["roundTrip"] for job in warm]),
        "warmPhases": {phase: median([job["phases"][phase] for job in warm]) for phase in PHASES} if warm else None,
        "warmOutside": median([job["seconds"] - sum(job["phases"].values()) for job in warm]),
        "gpuPeakMiB": max((job["gpuPeakMiB"] for job in done if job.get("gpuPeakMiB") is not None), default=None),
    }
    if warm and all(len(job.get("scales", [])) == len(warm[0].get("scales", [])) for job in warm):
        figures["warmScales"] = [
            {
                "size": scale["size"],
                "setup": median([job["scales"][index]["setup"] for job in warm]),
                # no pace where a job had none (one iteration a scale): None, not a median of some
                "msPerIteration": median(_all_or_none([job["scales"][index]["msPerIteration"] for job in warm])),
            }
            for index, scale in enumerate(warm[0].get("scales", []))
        ]
    return figures


def _all_or_none(values: list[float | None]) -> list[float]:
    return [] if None in values else values  # type: ignore[return-value]


def memory(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """residentMiB and gpuPeakMiB across the mixed jobs: first, after the first few, largest, last;
    the resident growth after the first few, and the GPU peak of the same job (the mix repeats)
    early and late."""
    resident = [job["residentMiB"] for job in jobs if job.get("residentMiB") is not None]
    if not resident:
        return None
    settled = min(SETTLED_AFTER, len(resident)) - 1
    figures: dict[str, Any] = {
        "jobs": len(jobs),
        "residentMiB": {
            "first": resident[0],
            "settledAfter": settled + 1,
            "settled": resident[settled],
            "max": max(resident),
            "last": resident[-1],
            "growth": round(resident[-1] - resident[settled], 1),
            "maxGrowth": round(max(resident[settled:]) - resident[settled], 1),
        },
        "gpuPeakMiB": None,
    }
    peaks = [job.get("gpuPeakMiB") for job in jobs]
    if any(peak is not None for peak in peaks):
        known = [peak for peak in peaks if peak is not None]
        same: dict[str, list[float]] = {}  # the same options, in order: the peak early and late
        for job in jobs:
            if job.get("gpuPeakMiB") is not None:
                same.setdefault(json.dumps(job["options"], sort_keys=True), []).append(job["gpuPeakMiB"])
        changes = [peaks_of[-1] - peaks_of[0] for peaks_of in same.values() if len(peaks_of) > 1]
        figures["gpuPeakMiB"] = {
            "first": known[0],
            "max": max(known),
            "last": known[-1],
            "sameJobLargestChange": round(max(changes, key=abs), 1) if changes else None,
        }
    return figures


def targets(results: Results) -> dict[str, dict[str, Any]]:
    """Each target against the median of the warm jobs at its size."""
    out = {}
    for size, seconds in TARGETS.items():
        jobs = results.sizes.get(str(size))
        warm = size_figures(jobs)["warmSeconds"] if jobs else None
        if results.device_type != "cuda":
            status = "not applicable (a CPU)"
        elif results.preset != TARGET_PRESET:
            status = f"not applicable (preset {results.preset})"
        elif warm is None:
            status = "not measured"
        else:
            status = "met" if warm <= seconds else "missed"
        out[str(size)] = {"target": seconds, "warmSeconds": warm, "status": status}
    return out


def cuda_visible_for(device: str) -> str | None:
    """CUDA_VISIBLE_DEVICES for the worker: the engine then picks what `device` names."""
    if device == "auto":
        return None
    if device == "cpu":
        return ""
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SystemExit(f"bench_worker: --device {device}: this machine has no CUDA GPU")
        index = int(device.partition(":")[2] or 0)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return visible.split(",")[index] if visible else str(index)
    raise SystemExit(f"bench_worker: --device must be auto, cpu, cuda or cuda:N, not {device!r}")


def cpu_description() -> str:
    """The CPU's model name, its threads for this process, and whether it has AVX-512 (and bf16 in it)."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == (platform.processor() or platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    has = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ("avx512f", "avx512_bf16", "amx_bf16"))
    return f"{model}, {threads} threads ({has})"


def device_line(device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0) if device.startswith("cuda:") else 0
        name = torch.cuda.get_device_name(index)
    else:
        name = "CPU"
    return f"device: {name}; torch {torch.__version__}; python {platform.python_version()}"


def job_summary(done: Done) -> str:
    line = done.line
    if not done.ok:
        return f"{line.get('outcome')} (execution {done.status}{': ' + done.reason if done.reason else ''})"
    phases = ", ".join(f"{name} {seconds:.3f}" for name, seconds in line["phases"].items())
    gpu = f", GPU peak {line['gpuPeakMiB']:.0f} MiB" if line.get("gpuPeakMiB") is not None else ""
    size = "x".join(map(str, line.get("size", [])))
    return (
        f"{line['seconds']:.3f} s received to answered ({phases}); round trip {done.round_trip:.3f} s; "
        f"{size}, {line.get('iterations')} iterations; resident {line.get('residentMiB')} MiB{gpu}"
    )


def print_sizes(results: Results) -> None:
    sizes = list(results.sizes)
    if not sizes:
        return
    figures = {size: size_figures(jobs) for size, jobs in results.sizes.items()}
    heading = f"{results.preset}, seconds received to answered"
    print(f"\n{heading:<52}" + "".join(f"{size + ' px':>12}" for size in sizes))

    def row(label: str, value: Callable[[dict[str, Any]], float | None], unit: str = "{:>12.3f}") -> None:
        cells = [value(figures[size]) for size in sizes]
        print(f"{label:<52}" + "".join(unit.format(cell) if cell is not None else f"{'-':>12}" for cell in cells))

    row("first job at the size", lambda f: f["first"] and f["first"]["seconds"])
    row("warm jobs: median", lambda f: f["warmSeconds"])
    for phase in PHASES:
        row(f"  {phase}", lambda f, phase=phase: f["warmPhases"] and f["warmPhases"][phase])
    row("  outside the phases (claim, heartbeat, answer)", lambda f: f["warmOutside"])
    row("warm jobs: round trip (execution started -> line)", lambda f: f["warmRoundTrip"])
    row("warm jobs counted", lambda f: f["warmCount"], "{:>12d}")
    row("GPU peak MiB (largest)", lambda f: f["gpuPeakMiB"], "{:>12.0f}")
    for size in sizes:
        for index, scale in enumerate(figures[size].get("warmScales") or []):
            pace = "" if scale["msPerIteration"] is None else f" + {scale['msPerIteration']:.2f} ms/it"
            shape = "x".join(map(str, scale["size"]))
            print(f"  {size} px, scale {index + 1} ({shape}): setup {scale['setup']:.3f} s{pace}")


def print_memory(results: Results) -> None:
    found = memory(results.mixed)
    if not found:
        return
    resident = found["residentMiB"]
    print(
        f"\nmixed jobs: {found['jobs']} ({len(succeeded(results.mixed))} succeeded); resident MiB: "
        f"first {resident['first']}, after {resident['settledAfter']} {resident['settled']}, "
        f"max {resident['max']}, last {resident['last']}; growth after the first {resident['settledAfter']}: "
        f"{resident['growth']:+.1f} (at most {resident['maxGrowth']:+.1f})"
    )
    if peak := found["gpuPeakMiB"]:
        same = peak["sameJobLargestChange"]
        print(
            f"GPU peak MiB per job: first {peak['first']}, max {peak['max']}, last {peak['last']}; "
            f"the same job early and late: {'-' if same is None else f'{same:+.1f}'}"
        )


def print_targets(results: Results) -> None:
    print(f"\ntargets (a warm {TARGET_PRESET} job, received to answered, on an H100):")
    for size, target in targets(results).items():
        warm = "" if target["warmSeconds"] is None else f" ({target['warmSeconds']:.3f} s)"
        print(f"  {size} px <= {target['target']:.1f} s: {target['status']}{warm}")


class StoppedError(Exception):
    """SIGTERM (the GPU check's time limit): the figures so far are kept."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=bounded_size, nargs="*", default=[512, 1024, 2048], help="px (default 512 1024 2048)"
    )
    parser.add_argument("--preset", default="standard", choices=["auto", "preview", "standard", "high"])
    parser.add_argument("--repeat", type=int, default=3, help="jobs per size, the first cold (default 3)")
    parser.add_argument("--mixed", type=int, default=50, help="mixed jobs for memory (default 50)")
    parser.add_argument(
        "--mixed-sizes", type=bounded_size, nargs="+", default=[256, 384, 512, 768], help="(default 256 384 512 768)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one job, or the start, may take")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file (after every job)")
    args = parser.parse_args(argv)
    cuda_visible = cuda_visible_for(args.device)
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        return _run(args, cuda_visible)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, cuda_visible: str | None) -> int:
    """moto, the worker, its start, the jobs and the report; the exit status."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = Results(device=device_line(args.device), cpu=cpu_description(), preset=args.preset, date=now)
    print(f"{results.device}\ncpu: {results.cpu}\ndate: {now}", flush=True)
    print(
        f"jobs: {args.preset} at {', '.join(map(str, args.sizes)) or 'no size'} px, {args.repeat} each; "
        f"then {args.mixed} mixed jobs at {', '.join(map(str, args.mixed_sizes))} px; one worker process",
        flush=True,
    )
    write = _writer(args.json, results)
    code = 0
    with _moto() as aws:
        bench = Bench(aws)
        worker = Worker(bench.worker_environment(cuda_visible))
        try:
            results.ready = worker.wait_for(lambda record: record.get("message") == READY, args.timeout)
            print(ready_summary(results.ready), flush=True)
            write()
            planned = [
                (str(size), {"preset": args.preset, "size": size}) for size in args.sizes for _ in range(args.repeat)
            ]
            planned += [("mixed", mixed_options(index, args.mixed_sizes)) for index in range(args.mixed)]
            for number, (where, options) in enumerate(planned, 1):
                done = run_job(bench, worker, options, args.timeout)
                if where == "mixed":
                    results.mixed.append(done.record())
                else:
                    results.sizes.setdefault(where, []).append(done.record())
                    if done.ok:
                        results.results[where] = bench.stored_result(done.output_key)
                if not done.ok:
                    why = f"{done.line.get('outcome')}" + (f" ({done.reason})" if done.reason else "")
                    results.failed.append(f"job {number} ({json.dumps(options)}): {why}")
                label = f"{where} px" if where != "mixed" else f"mixed ({json.dumps(options)})"
                print(f"job {number}/{len(planned)}, {label}: {job_summary(done)}", flush=True)
                write()
        except (WorkerGoneError, TimeoutError) as failure:
            results.failed.append(str(failure))
            print(f"bench_worker: {failure}", file=sys.stderr)
            if tail := worker.tail():
                print("the worker's other output (last lines):", tail, sep="\n", file=sys.stderr)
            code = 1
        except StoppedError:
            results.failed.append("stopped (SIGTERM) before the last job")
            print("bench_worker: stopped; the figures so far follow", file=sys.stderr)
            code = 1
        finally:
            results.leaving = worker.stop()
            write()
    print_sizes(results)
    print_memory(results)
    print_targets(results)
    if results.failed:
        print("\nfailed: " + "; ".join(results.failed))
        code = 1
    return code


def bounded_size(text: str) -> int:
    """A size the job contract accepts (stylejob: MIN_SIZE to MAX_SIZE px)."""
    value = int(text)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{value}: a size is between {MIN_SIZE} and {MAX_SIZE} px")
    return value


def ready_summary(ready: dict[str, Any]) -> str:
    phases = ", ".join(f"{name} {seconds:.3f}" for name, seconds in ready["phases"].items())
    return (
        f"worker ready on {ready.get('device')} in {ready['total']:.3f} s from process start "
        f"({phases}); resident {ready.get('residentMiB')} MiB"
    )


def _stopped(*_: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the worker's stop and the report must not be cut
    raise StoppedError


@contextlib.contextmanager
def _moto() -> Iterator[LocalAws]:
    server = start_moto()
    try:
        yield LocalAws(server.endpoint).create()
    finally:
        server.stop()


def _writer(path: Path | None, results: Results) -> Callable[[], None]:
    def write() -> None:
        if path is None:
            return
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(results.figures(), indent=1))
        partial.replace(path)  # whole or not at all, should the time limit strike mid-write

    return write


if __name__ == "__main__":
    sys.exit(main())
