"""benchmarks/bench_pool.py for real: the local stack, WebSocket clients, a handful of 64 px jobs
one after another and a burst of two; and its comparison of the first job with the rest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_pool.py"
NUMBER = r"(\d+\.\d\d)"
SIGNED = r"(-?\d+\.\d\d)"
# result, accepted, preview, the first progress (none for a job quicker than the progress interval),
# to the worker, in the worker, its optimisation, back from the worker (a little below zero when
# the result's push outruns the worker's last steps)
ROW = rf"\s+{NUMBER}" * 3 + rf"\s+({NUMBER}|-)" + rf"\s+{NUMBER}" * 3 + rf"\s+{SIGNED}$"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


def test_jobs_one_after_another_reuse_the_first_worker_and_a_burst_is_served(tmp_path: Path):
    figures_file = tmp_path / "pool.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--jobs", "2", "--burst", "2", "--json", str(figures_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )

    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert re.search(r"^date: \d{4}-\d\d-\d\d \d\d:\d\d UTC; commit \S+$", out, re.M), out
    assert re.search(r"^cpu: .+, \d+ cores; avx512f: (yes|no), avx512_bf16: (yes|no); load average [\d. ]+$", out, re.M)
    assert (
        "stack: python -m stylelocal --device cpu --parameter JobsPerConnection=0 --parameter JobsPerSourceIp=0" in out
    )
    sequential, _, burst = out.partition("2 jobs at once from 2 clients; seconds from sending:")
    assert len(re.findall(rf"^[12]{ROW}", sequential, re.M)) == 2, out
    assert len(re.findall(rf"^[12]{ROW}", burst, re.M)) == 2, out
    assert re.search(rf"^a worker started: ready {NUMBER} s after its process started \(imports {NUMBER}, ", out, re.M)
    for which in ("job 1", "the later jobs (medians of each part)"):
        assert re.search(
            rf"^where the time went, {re.escape(which)}: {NUMBER} s: to the worker {NUMBER} \(ACCEPTED at {NUMBER}\), "
            rf"in the worker {NUMBER} \(optimisation {NUMBER}\), back to the client {SIGNED}$",
            out,
            re.M,
        ), out
    assert re.search(
        rf"^first job {NUMBER} s, the rest's median {NUMBER} s: {NUMBER}x the first "
        r"\(target at most 0\.6x: (met|missed)\)$",
        out,
        re.M,
    ), out
    assert re.search(rf"^burst: 2 jobs at once, {NUMBER}, {NUMBER} s; served by 1 worker\(s\)$", out, re.M), out

    figures = json.loads(figures_file.read_text())
    assert figures["failed"] == []
    assert figures["cpu"]["cores"] >= 1
    assert isinstance(figures["cpu"]["avx512f"], bool)
    jobs = figures["sequential"] + figures["burst"]
    assert [job["outcome"] for job in jobs] == ["completed"] * 4
    assert len({job["job_id"] for job in jobs}) == 4
    # the stack runs one worker on a CPU: the first job started it, every later one found it warm
    assert len(figures["workersStarted"]) == 1
    assert {job["worker_id"] for job in jobs} == {figures["workersStarted"][0]["workerId"]}
    assert figures["burstWorkers"] == 1
    for job in jobs:
        assert 0 < job["accepted"] < job["result"]
        assert job["preview"] > job["accepted"]  # the instant preview, for every job
        assert 0 < job["optimisation"] < job["worker"] < job["result"]
        # split at the worker: its way there, the worker's own seconds, the way back
        assert job["to_worker"] > 0
        assert job["to_worker"] + job["worker"] + job["from_worker"] == pytest.approx(job["result"])
    compared = figures["firstAgainstRest"]
    assert compared["first"] == pytest.approx(figures["sequential"][0]["result"], abs=1e-3)
    assert compared["ratio"] == pytest.approx(compared["restMedian"] / compared["first"], abs=1e-3)
    assert compared["met"] == (compared["ratio"] <= 0.6)
    assert '"message": "stylize-worker job"' in figures_file.with_suffix(".log").read_text()  # the stack's log


def _timed(bench, result: float, outcome: str = "completed"):
    return bench.Timed(
        job_id="j", outcome=outcome, sent_at=0.0, result=result, accepted=0.1, preview=0.5, first_progress=1.0
    )


def test_the_first_job_against_the_median_of_the_rest(bench):
    compared = bench.first_against_rest([_timed(bench, 10.0), _timed(bench, 7.0), _timed(bench, 5.0),
                                         _timed(bench, 5.5)])  # fmt: skip

    assert compared == {"first": 10.0, "restMedian": 5.5, "ratio": 0.55, "target": 0.6, "met": True}
    missed = bench.first_against_rest([_timed(bench, 10.0), _timed(bench, 6.5)])
    assert (missed["ratio"], missed["met"]) == (0.65, False)


def test_no_comparison_without_a_first_job_and_another(bench):
    assert bench.first_against_rest([_timed(bench, 10.0)]) is None
    assert bench.first_against_rest([_timed(bench, 10.0, "FAILED x"), _timed(bench, 5.0), _timed(bench, 5.0)]) is None
