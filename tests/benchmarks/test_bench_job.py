"""benchmarks/bench_job.py for real: moto, a fresh worker process on the CPU, a tiny job."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.stack import fake_cuda

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_job.py"
NUMBER = r"(\d+\.\d+)"
TINY_JOB = ("--preset", "preview", "--size", "64", "--device", "cpu")


def test_the_benchmark_runs_a_whole_job_and_prints_every_phase(tmp_path: Path):
    figures = tmp_path / "job.json"
    done = subprocess.run(
        [
            *(sys.executable, str(BENCH), *TINY_JOB, "--repeat", "2"),
            *("--variant", "late_cuda", "--variant", "ahead", "--json", str(figures)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    defaults, _, variants = out.partition("\nvariant late_cuda: CUDA started by PyTorch after its import\n")
    variant, _, ahead = variants.partition(
        "\nvariant ahead: each scale made ready while the GPU runs the one before, not between scales\n"
    )
    assert variant, out
    assert ahead, out
    assert re.search(r"^device: CPU .*, \d+ threads; torch \S+", out, re.M), out
    # the worker said it succeeded on the CPU, and its result is in moto's S3 at 64 px (chelsea is 3:2)
    assert re.search(
        r"^worker: device cpu, 60 iterations, CUDA's early start: no CUDA driver \(libcuda.so.1 not found\), "
        r"scales made ready ahead: no, result in S3: 64x4\d JPEG, \d+ bytes$",
        out,
        re.M,
    ), out
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
        (r"beside them: CUDA's start \(a thread\)", 0),  # no driver here: over in a moment
        (r"beside them: AWS clients, the images \(a thread\)", 0.001),
        ("total from process start", 0.001),
        ("wall, Popen to exit", 0.001),
    ):
        number = NUMBER if least >= 0 else r"(-?\d+\.\d+)"
        found = re.search(rf"^\s*{label}\s+{number}\s+{number}\s+{number}$", defaults, re.M)
        assert found, f"no row for {label}:\n{out}"
        assert all(float(value) >= least for value in found.groups()), found.group(0)
    total = re.search(rf"^total from process start\s+{NUMBER}", out, re.M)
    wall = re.search(rf"^wall, Popen to exit\s+{NUMBER}", out, re.M)
    assert total
    assert wall
    assert float(wall.group(1)) >= float(total.group(1))
    assert re.search(r"^optimisation share of total\s+\d+\.\d%\s+\d+\.\d%\s+\d+\.\d%$", out, re.M), out
    # the variant: the same job with CUDA's start left to PyTorch (STYLIZE_EARLY_CUDA=0), its own
    # table without that thread, then its medians against the defaults'
    assert re.search(rf"^total from process start\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", variant, re.M), variant
    assert "CUDA's start" not in variant
    assert re.search(
        rf"^late_cuda against the defaults \(medians\): total {NUMBER} s against {NUMBER} s \([+-]\d+\.\d+ s\), "
        rf"model {NUMBER} s against {NUMBER} s, optimisation {NUMBER} s against {NUMBER} s$",
        variant,
        re.M,
    ), variant
    # the other variant: each scale made ready ahead (STYLIZE_PREPARE_AHEAD=1, forced on this CPU),
    # run in turn with the other two, and its own comparison
    assert re.search(r"^ahead against the defaults \(medians\): total .* optimisation .* s$", ahead, re.M), ahead
    written = json.loads(figures.read_text())
    assert [run["cudaStart"] for run in written["runs"]] == ["no CUDA driver (libcuda.so.1 not found)"] * 2
    assert [("cudaStart" in run) for run in written["variants"]["late_cuda"]] == [False, False]
    assert [run["preparedAhead"] for run in written["runs"]] == [False, False]
    assert [run["preparedAhead"] for run in written["variants"]["ahead"]] == [True, True]


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


def test_an_arm_that_fails_does_not_cost_the_others_their_figures(tmp_path: Path):
    """On a GPU session there is one try: if the defaults' workers crash (here a stand-in CUDA driver
    aborts the process in cuInit, which only the defaults' early start calls), the late_cuda runs
    still come out, in the table and the JSON, and the failure is said, with a failing status."""
    driver = fake_cuda.build(tmp_path)
    figures = tmp_path / "job.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), *TINY_JOB, "--repeat", "2", "--variant", "late_cuda", "--json", str(figures)],
        cwd=ROOT,
        env={**fake_cuda.in_front(driver, os.environ), "FAKE_CUDA_ABORT": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 1  # the defaults' worker died of SIGABRT
    assert "bench_job: defaults: the worker exited with status -6" in done.stderr
    assert "variant late_cuda: CUDA started by PyTorch after its import" in done.stdout
    assert re.search(rf"^total from process start\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", done.stdout, re.M)
    written = json.loads(figures.read_text())
    assert written["runs"] == []
    assert len(written["variants"]["late_cuda"]) == 2  # the arm went on after the other's failure
    assert written["failed"]["defaults"].startswith("the worker exited with status -6")
