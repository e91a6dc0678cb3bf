"""benchmarks/bench_job.py for real: moto, a fresh worker process on the CPU, a tiny job."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_job.py"
NUMBER = r"(\d+\.\d+)"


def test_the_benchmark_runs_a_whole_job_and_prints_every_phase():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--preset", "preview", "--size", "64", "--device", "cpu", "--repeat", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^device: CPU .*, \d+ threads; torch \S+", out, re.M), out
    # the worker said it succeeded on the CPU, and its result is in moto's S3 at 64 px (chelsea is 3:2)
    assert re.search(r"^worker: device cpu, 60 iterations, result in S3: 64x4\d JPEG, \d+ bytes$", out, re.M), out
    for label, least in (
        ("imports", 0.001),
        ("model", 0.001),
        ("download_wait", 0),  # none when the thread had the images before torch was imported
        ("decode", 0.001),
        ("optimisation", 0.001),
        (r"scale 1 \(64x4\d\): setup", -1.0),  # setup minus a slow first iteration's excess may dip below 0
        ("scale 1: ms per iteration", 0.001),
        ("encode_upload", 0.001),
        (r"outside phases \(start-up, clients, last msg\)", 0.001),
        (r"beside them: AWS clients, the images \(a thread\)", 0.001),
        ("total from process start", 0.001),
        ("wall, Popen to exit", 0.001),
    ):
        number = NUMBER if least >= 0 else r"(-?\d+\.\d+)"
        found = re.search(rf"^\s*{label}\s+{number}\s+{number}\s+{number}$", out, re.M)
        assert found, f"no row for {label}:\n{out}"
        assert all(float(value) >= least for value in found.groups()), found.group(0)
    total = re.search(rf"^total from process start\s+{NUMBER}", out, re.M)
    wall = re.search(rf"^wall, Popen to exit\s+{NUMBER}", out, re.M)
    assert total
    assert wall
    assert float(wall.group(1)) >= float(total.group(1))
    assert re.search(r"^optimisation share of total\s+\d+\.\d%\s+\d+\.\d%\s+\d+\.\d%$", out, re.M), out


def test_a_failing_worker_fails_the_benchmark_with_its_reason():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--size", "10", "--device", "cpu"],  # below the engine's minimum size
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2  # the worker's status for bad input
    assert "stylize-worker: error: invalid options: size must be between 64 and 4096" in done.stderr
