"""The whole job, as AWS Batch runs it: a fresh `python -m stylize_worker` process against moto.

    python benchmarks/bench_job.py [--preset standard] [--size 512] [--device auto] [--repeat 1]
                                   [--variant late_cuda] [--json FILE]

In this process: a moto server holding the template's resources (stylelocal: `start_moto`,
`LocalAws.create()`), a fixed content/style pair in the images bucket (scikit-image's chelsea
photo, or the project's swirls when scikit-image is missing, as a JPEG; the catalogue's swirls
style as styles/swirls.jpg) and the job's item in the jobs table. Then, `--repeat` times, a fresh
worker process with the environment Batch gives the container (the job definition's variables,
JOB_JSON, moto's endpoint, fake credentials, CUDA_VISIBLE_DEVICES; none of the host's AWS_*).

For each run it prints the worker's own phase timings (its "stylize-worker timings" log line),
the time outside the phases (interpreter start-up, boto3 clients, the "completed" message), the
total from process start, the wall time from just before Popen to the process's exit, and the
optimisation's share of the total: the parts around the optimisation should not dwarf it (the
aim: a 512 px `standard` job under 6 s from process start on an H100).

--variant NAME: also `--repeat` workers with one setting changed (VARIANTS), each run right after
one of the defaults', with their own table and a line comparing the medians. A worker that fails
ends its own kind of run only; the others go on, and the exit status says so.

--device: the worker has no option for the device (the engine picks CUDA when it is visible), so
`cpu` runs it with CUDA_VISIBLE_DEVICES="" and `cuda:N` with GPU N alone visible, as the local
Batch runner does; `auto` leaves the host's CUDA_VISIBLE_DEVICES as it is.

Caveats: S3 and SQS are moto on loopback, not AWS; this process has imported torch already, so
the worker's `imports` are a warm file cache's (a container's first start reads them from disk).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from stylelocal.aws import FAKE_CREDENTIALS, LocalAws, MotoServer, start_moto
from stylelocal.batch import container_environment
from stylelocal.catalogue import jpeg, style_key
from stylelocal.template import ROOT
from styletransfer.options import PRESETS
from styletransfer.samples import benchmark_pair

PHASES = ("imports", "model", "download_wait", "decode", "optimisation", "encode_upload")
BACKGROUND = {  # the worker's threads (its timings' "background"), as the table names them
    "cuda_start": "CUDA's start",
    "clients_download": "AWS clients, the images",
}
# --variant: the worker with one setting changed, run alternately with the defaults (the page cache
# warms as runs go on, so alternating keeps the comparison fair): name -> (what it is, environment)
VARIANTS = {
    "late_cuda": ("CUDA started by PyTorch after its import", {"STYLIZE_EARLY_CUDA": "0"}),
    "ahead": (
        "each scale made ready while the GPU runs the one before, not between scales",
        {"STYLIZE_PREPARE_AHEAD": "1"},
    ),
}
TIMINGS_MESSAGE = "stylize-worker timings"
STYLE = "swirls"


@dataclass(frozen=True)
class Run:
    """One worker process: its timings line (phases, total, summary) and the wall time around it."""

    wall: float
    timings: dict[str, Any]
    result: str  # what the bucket holds at the output key, e.g. "512x341 JPEG, 48213 bytes"

    @property
    def phases(self) -> dict[str, float]:
        return self.timings["phases"]

    @property
    def total(self) -> float:
        return self.timings["total"]

    @property
    def outside(self) -> float:
        """Seconds from process start not in any phase: start-up, boto3 clients, the last message."""
        return self.total - sum(self.phases.values())


class WorkerError(Exception):
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"the worker exited with status {returncode}")
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    @property
    def reason(self) -> str:
        """The status and the last line of stderr (the worker's "stylize-worker: error: ...")."""
        last = self.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
        return f"{self}: {last[0]}"


class Stack:
    """moto with the template's resources, the images the jobs read, and the worker's environment."""

    def __init__(self, server: MotoServer) -> None:
        self.aws = LocalAws(server.endpoint).create()
        self.s3 = self.aws.client("s3")
        self.bucket = self.aws.refs["ImagesBucket"]
        self.content_key = "public/input/bench-content.jpg"
        self.style_key = style_key(STYLE)
        content, style = benchmark_pair()
        self.s3.put_object(Bucket=self.bucket, Key=self.content_key, Body=jpeg(content), ContentType="image/jpeg")
        self.s3.put_object(Bucket=self.bucket, Key=self.style_key, Body=jpeg(style), ContentType="image/jpeg")
        definition = self.aws.client("batch").describe_job_definitions(
            jobDefinitions=[self.aws.refs["WorkerJobDefinition"]]
        )["jobDefinitions"][0]
        self.definition_env = container_environment(definition["containerProperties"].get("environment") or [])

    def new_job(self, options: dict[str, Any]) -> dict[str, Any]:
        """A job as TRANSFER_STYLE leaves it: its item in the jobs table, and the execution input."""
        job_id = uuid.uuid4().hex
        job = {
            "jobId": job_id,
            "inputKey": self.content_key,
            "styleKey": self.style_key,
            "outputKey": f"public/output/{job_id}.jpg",
            "isPrivate": False,
            "options": options,
        }
        now = int(time.time() * 1000)
        item = {
            **{key: {"S": job[key]} for key in ("jobId", "inputKey", "styleKey", "outputKey")},
            "isPrivate": {"BOOL": False},
            "connectionId": {"S": "bench="},
            "style": {"S": STYLE},
            "status": {"S": "SUBMITTED"},
            "progress": {"N": "0"},
            "createdAt": {"N": str(now)},
            "updatedAt": {"N": str(now)},
        }
        self.aws.client("dynamodb").put_item(TableName=self.aws.refs["JobsTable"], Item=item)
        return job

    def environment(self, job: dict[str, Any], cuda_visible: str | None) -> dict[str, str]:
        """The container's environment, as stylelocal.batch.LocalBatch gives it."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(self.definition_env)
        env.update(
            {
                "JOB_JSON": json.dumps(job),
                "AWS_ENDPOINT_URL": self.aws.endpoint,
                "AWS_REGION": self.aws.region,
                **FAKE_CREDENTIALS,
                "PYTHONUNBUFFERED": "1",  # as the Dockerfile sets it
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "agent"), os.environ.get("PYTHONPATH")])),
            }
        )
        if cuda_visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = cuda_visible
        return env

    def stored_result(self, key: str) -> str:
        stored = self.s3.get_object(Bucket=self.bucket, Key=key)
        body = stored["Body"].read()
        image = Image.open(io.BytesIO(body))
        return f"{image.width}x{image.height} {image.format}, {len(body)} bytes"


def run_worker(
    stack: Stack, options: dict[str, Any], cuda_visible: str | None, timeout: float, settings: dict[str, str]
) -> Run:
    job = stack.new_job(options)
    env = {**stack.environment(job, cuda_visible), **settings}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "stylize_worker"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise WorkerError(-9, stdout, stderr + f"\n(killed after {timeout:.0f} s)") from None
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise WorkerError(process.returncode, stdout, stderr)
    timings = timings_line(stdout)
    if timings is None or timings.get("outcome") != "succeeded":
        raise WorkerError(process.returncode, stdout, stderr + "\n(no successful timings line on stdout)")
    return Run(wall, timings, stack.stored_result(job["outputKey"]))


def timings_line(stdout: str) -> dict[str, Any] | None:
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("message") == TIMINGS_MESSAGE:
                return record
    return None


def cuda_visible_for(device: str) -> str | None:
    """CUDA_VISIBLE_DEVICES for the worker: the engine then picks what `device` names."""
    if device == "auto":
        return None
    if device == "cpu":
        return ""
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SystemExit(f"bench_job: --device {device}: this machine has no CUDA GPU")
        index = int(device.partition(":")[2] or 0)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return visible.split(",")[index] if visible else str(index)
    raise SystemExit(f"bench_job: --device must be auto, cpu, cuda or cuda:N, not {device!r}")


def device_line(device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0) if device.startswith("cuda:") else 0
        name = torch.cuda.get_device_name(index)
    else:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        name = f"CPU ({platform.processor() or platform.machine()}), {threads} threads"  # as the worker sets them
    return f"device: {name}; torch {torch.__version__}; python {platform.python_version()}"


def scale_rows(runs: list[Run], row: Callable[[str, list[float]], None]) -> None:
    """The optimisation scale by scale (the worker's `scales`): what each new image size cost
    beyond its iterations (targets, the eager warm-up, capture, kernels loaded on first use), and
    its iterations' steady pace. A warm process's figures beside these (bench_engine) show what a
    fresh process pays per size."""
    for index, scale in enumerate(runs[0].timings.get("scales", [])):
        size = "x".join(str(side) for side in scale["size"])
        scales = [run.timings["scales"][index] for run in runs]
        row(f"    scale {index + 1} ({size}): setup", [figures["setup"] for figures in scales])
        if all(figures["msPerIteration"] is not None for figures in scales):
            row(f"    scale {index + 1}: ms per iteration", [figures["msPerIteration"] for figures in scales])


def print_table(runs: list[Run]) -> None:
    columns = [f"run {n}" for n in range(1, len(runs) + 1)] + (["median"] if len(runs) > 1 else [])

    def row(label: str, values: list[float], unit: str = "s") -> None:
        if len(runs) > 1:
            values = [*values, statistics.median(values)]
        cells = "".join(f"{value:>10.1%}" if unit == "%" else f"{value:>10.3f}" for value in values)
        print(f"{label:<48}{cells}")

    print(f"{'seconds':<48}" + "".join(f"{column:>10}" for column in columns))
    for phase in PHASES:
        row(f"  {phase}", [run.phases[phase] for run in runs])
        if phase == "optimisation":
            scale_rows(runs, row)
    row("  outside phases (start-up, clients, last msg)", [run.outside for run in runs])
    for name, label in BACKGROUND.items():
        if all(name in run.timings["background"] for run in runs):
            # None: the thread was still at work when the worker wrote its line
            seconds = [run.timings["background"][name] for run in runs]
            row(f"beside them: {label} (a thread)", [math.nan if value is None else value for value in seconds])
    row("total from process start", [run.total for run in runs])
    row("wall, Popen to exit", [run.wall for run in runs])
    row("  wall minus total (spawn, exit)", [run.wall - run.total for run in runs])
    row("optimisation share of total", [run.phases["optimisation"] / run.total for run in runs], unit="%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard", choices=["auto", *PRESETS])
    parser.add_argument("--size", type=int, default=512, help="long side of the result in px (default 512)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--repeat", type=int, default=1, help="worker runs, each a fresh process (default 1)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds one run may take (default 1200)")
    parser.add_argument("--json", type=Path, help="also write each run's timings to this JSON file")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        default=[],
        help="also run the worker with one setting changed, alternately with the defaults: "
        + "; ".join(f"{name}: {description}" for name, (description, _) in VARIANTS.items()),
    )
    args = parser.parse_args(argv)
    cuda_visible = cuda_visible_for(args.device)
    options = {"preset": args.preset, "size": args.size}
    arms = {"defaults": {}, **{name: VARIANTS[name][1] for name in args.variant}}

    print(device_line(args.device))
    print(
        f"job: preset {args.preset}, size {args.size}, {args.repeat} run(s) of {', '.join(arms)}, each a fresh process",
        flush=True,
    )
    runs: dict[str, list[Run]] = {arm: [] for arm in arms}
    failed: dict[str, WorkerError] = {}  # an arm stops at its first failure; the others go on
    with start_moto() as server:
        stack = Stack(server)
        for _ in range(args.repeat):
            for arm, settings in arms.items():
                if arm in failed:
                    continue
                try:
                    runs[arm].append(run_worker(stack, options, cuda_visible, args.timeout, settings))
                except WorkerError as failure:
                    failed[arm] = failure
                    report_failure(arm, failure)
    defaults = runs.pop("defaults")
    if defaults:
        summary = defaults[-1].timings
        print(
            f"worker: device {summary.get('device')}, {summary.get('iterations')} iterations, "
            f"CUDA's early start: {summary.get('cudaStart', 'off')}, "
            f"scales made ready ahead: {'yes' if summary.get('preparedAhead') else 'no'}, "
            f"result in S3: {defaults[-1].result}"
        )
        print_table(defaults)
    for arm, arm_runs in runs.items():
        if arm_runs:
            print(f"\nvariant {arm}: {VARIANTS[arm][0]}")
            print_table(arm_runs)
            if defaults:
                print(compare(arm, arm_runs, defaults))
    if args.json:
        job = f"preset {args.preset}, {args.size} px"
        figures = {
            "device": device_line(args.device),
            "job": job,
            "runs": [run.timings for run in defaults],
            "variants": {arm: [run.timings for run in arm_runs] for arm, arm_runs in runs.items()},
            "failed": {arm: failure.reason for arm, failure in failed.items()},
        }
        args.json.write_text(json.dumps(figures))
    if failed:
        first = next(iter(failed.values()))
        return first.returncode if first.returncode > 0 else 1
    return 0


def report_failure(arm: str, failure: WorkerError) -> None:
    print(f"bench_job: {arm}: {failure}", file=sys.stderr)
    print(failure.stderr.rstrip(), file=sys.stderr)
    if failure.stdout.strip():  # its log lines: an unexpected failure's traceback is there
        print("worker's stdout (last lines):", failure.stdout.rstrip()[-4000:], sep="\n", file=sys.stderr)


def compare(arm: str, arm_runs: list[Run], defaults: list[Run]) -> str:
    """One line: the medians of the variant's total, model and optimisation against the defaults'."""

    def medians(figure: Callable[[Run], float]) -> tuple[float, float]:
        return statistics.median(map(figure, arm_runs)), statistics.median(map(figure, defaults))

    total, model, optimisation = (
        medians(figure)
        for figure in (lambda run: run.total, lambda run: run.phases["model"], lambda run: run.phases["optimisation"])
    )
    return (
        f"{arm} against the defaults (medians): total {total[0]:.3f} s against {total[1]:.3f} s "
        f"({total[0] - total[1]:+.3f} s), model {model[0]:.3f} s against {model[1]:.3f} s, "
        f"optimisation {optimisation[0]:.3f} s against {optimisation[1]:.3f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
