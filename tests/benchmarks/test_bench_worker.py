"""benchmarks/bench_worker.py for real: moto, the paint-only state machine and one warm worker
process on the CPU, a handful of 64 px jobs; and its figures worked out from given job lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stylejob.job import JobOptions

from tests.agent.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_worker.py"
NUMBER = r"(\d+\.\d+)"
# two jobs at 64 px (the first cold at its size, the second warm) and two mixed ones: a few
# seconds each on a quiet 2-core CPU (the `preview` preset's 60 iterations at 64x43)
TINY = (
    "--preset",
    "preview",
    "--sizes",
    "64",
    "--repeat",
    "2",
    "--mixed",
    "2",
    "--mixed-sizes",
    "64",
    "--device",
    "cpu",
)


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


def test_one_worker_paints_every_job_and_the_benchmark_reports_each(tmp_path: Path, bench):
    figures_file = tmp_path / "worker.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), *TINY, "--json", str(figures_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )

    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert re.search(r"^device: CPU; torch \S+; python \S+$", out, re.M), out
    assert re.search(r"^cpu: .+, \d+ threads \(avx512f (yes|no), avx512_bf16 (yes|no), amx_bf16 (yes|no)\)$", out, re.M)
    assert re.search(r"^date: \d{4}-\d\d-\d\d \d\d:\d\d UTC$", out, re.M), out
    # the cold start, from the worker's own "ready" line
    assert re.search(
        rf"^worker ready on cpu in {NUMBER} s from process start \(imports {NUMBER}, clients {NUMBER}, "
        rf"model {NUMBER}, warm_up {NUMBER}\); resident {NUMBER} MiB$",
        out,
        re.M,
    ), out
    # each job as it is answered: two at 64 px, then the two mixed ones, 64x43 (chelsea is 3:2)
    rows = re.findall(
        r"^job (\d)/4, (64 px|mixed \(.*\)): " + NUMBER + r" s received to answered .*64x43, 60 iter", out, re.M
    )
    assert [(number, where) for number, where, _ in rows] == [
        ("1", "64 px"),
        ("2", "64 px"),
        ("3", 'mixed ({"preset": "preview", "size": 64})'),
        ("4", 'mixed ({"preset": "preview", "size": 64, "preserveColors": true})'),
    ], out
    for label in ("first job at the size", "warm jobs: median", "  optimisation", "  outside the phases"):
        assert re.search(rf"^{re.escape(label)}.*\s{NUMBER}$", out, re.M), label
    assert re.search(r"^warm jobs counted\s+1$", out, re.M), out
    assert re.search(rf"^  64 px, scale 1 \(64x43\): setup -?{NUMBER} s \+ {NUMBER} ms/it$", out, re.M), out
    assert re.search(
        rf"^mixed jobs: 2 \(2 succeeded\); resident MiB: first {NUMBER}, after 2 {NUMBER}, max {NUMBER}, "
        rf"last {NUMBER}; growth after the first 2: [+-]{NUMBER} \(at most [+-]{NUMBER}\)$",
        out,
        re.M,
    ), out
    assert "GPU peak MiB per job" not in out  # none on a CPU
    assert "  512 px <= 2.0 s: not applicable (a CPU)" in out
    assert "  1024 px <= 6.0 s: not applicable (a CPU)" in out

    figures = json.loads(figures_file.read_text())
    assert figures["ready"]["device"] == "cpu"
    assert figures["failed"] == []
    jobs = figures["sizes"]["64"]["jobs"] + figures["mixed"]["jobs"]
    assert [(job["outcome"], job["status"]) for job in jobs] == [("succeeded", "SUCCEEDED")] * 4
    # one process took them all, one after another, and left when stopped
    assert {job["workerId"] for job in jobs} == {figures["ready"]["workerId"]}
    assert [job["jobsDone"] for job in jobs] == [1, 2, 3, 4]
    assert (figures["leaving"]["why"], figures["leaving"]["jobsDone"]) == ("stopped", 4)
    assert [job["options"] for job in figures["mixed"]["jobs"]] == [bench.mixed_options(i, [64]) for i in range(2)]
    assert re.fullmatch(r"64x43 JPEG, \d+ bytes", figures["results"]["64"])  # the last 64 px job's result, in S3
    for job in jobs:
        assert job["roundTrip"] >= job["seconds"] >= sum(job["phases"].values()) > 0
        assert job["residentMiB"] > 100  # PyTorch and the network at least
    size = figures["sizes"]["64"]
    assert size["first"]["seconds"] == jobs[0]["seconds"]
    assert size["warmSeconds"] == jobs[1]["seconds"]  # the median of one
    assert size["warmCount"] == 1
    assert figures["mixed"]["memory"]["residentMiB"]["last"] == jobs[-1]["residentMiB"]
    assert figures["mixed"]["memory"]["gpuPeakMiB"] is None
    assert {target["status"] for target in figures["targets"].values()} == {"not applicable (a CPU)"}


def test_a_size_the_contract_refuses_is_refused_before_anything_starts():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "10", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert "10: a size is between 64 and 2048 px" in done.stderr


def test_the_mix_cycles_sizes_presets_and_options_and_repeats_itself(bench):
    sizes = [256, 384, 512, 768]
    mix = [bench.mixed_options(index, sizes) for index in range(50)]

    assert [job["size"] for job in mix[:8]] == sizes * 2
    assert [job["preset"] for job in mix[:12]] == ["preview"] * 8 + ["standard"] * 4  # every third round
    assert mix[12:24] == mix[:12]  # so the same job comes early and late
    assert len({json.dumps(job, sort_keys=True) for job in mix}) == 12
    for options in mix:
        JobOptions.model_validate(options)  # each is a job the service accepts


def _line(seconds: float, resident: float, gpu: float | None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    phases = {"download": 0.01, "decode": 0.01, "optimisation": seconds - 0.1, "encode_upload": 0.02}
    return {"outcome": "succeeded", "status": "SUCCEEDED", "seconds": seconds, "roundTrip": seconds + 0.05,
            "phases": phases, "residentMiB": resident, "gpuPeakMiB": gpu, "options": options or {},
            "scales": [{"size": [512, 341], "setup": 0.1, "msPerIteration": 2.0}]}  # fmt: skip


def test_the_figures_from_the_workers_job_lines(bench):
    results = bench.Results(device="device: NVIDIA H100", cpu="", preset="standard", date="")
    results.ready = {"device": "cuda:0"}
    results.sizes["512"] = [_line(2.5, 2000, 900), _line(1.5, 2001, 900), _line(1.9, 2001, 900)]
    results.sizes["1024"] = [_line(9.0, 2100, 3000), _line(6.5, 2100, 3000), _line(6.1, 2100, 3000)]
    a, b = {"size": 256}, {"size": 768}
    results.mixed = [_line(1, resident, peak, options) for resident, peak, options in
                     ((2100, 300, a), (2150, 1800, b), (2160, 310, a), (2161, 1800, b), (2162, 300, a),
                      (2170, 1790, b), (2165, 305, a))]  # fmt: skip

    figures = results.figures()

    size = figures["sizes"]["512"]
    assert size["first"]["seconds"] == 2.5
    assert (size["warmSeconds"], size["warmCount"]) == (1.7, 2)  # the median of the two warm ones
    assert size["warmPhases"]["optimisation"] == pytest.approx(1.6)
    assert size["warmOutside"] == pytest.approx(0.06)
    assert size["warmScales"] == [{"size": [512, 341], "setup": 0.1, "msPerIteration": 2.0}]
    assert size["gpuPeakMiB"] == 900
    assert figures["targets"] == {
        "512": {"target": 2.0, "warmSeconds": 1.7, "status": "met"},
        "1024": {"target": 6.0, "warmSeconds": 6.3, "status": "missed"},
    }
    memory = figures["mixed"]["memory"]
    assert memory["residentMiB"] == {"first": 2100, "settledAfter": 5, "settled": 2162, "max": 2170, "last": 2165,
                                     "growth": 3, "maxGrowth": 8}  # fmt: skip
    # the same job early and late: 256 px 300 -> 305, 768 px 1800 -> 1790; the larger change counts
    assert memory["gpuPeakMiB"] == {"first": 300, "max": 1800, "last": 305, "sameJobLargestChange": -10}


@pytest.mark.parametrize(
    ("device", "preset", "sizes", "status"),
    [
        ("cpu", "standard", {"512": [_line(1.0, 1, None)] * 2}, "not applicable (a CPU)"),
        ("cuda:0", "preview", {"512": [_line(1.0, 1, 1)] * 2}, "not applicable (preset preview)"),
        ("cuda:0", "standard", {"512": [_line(1.0, 1, 1)]}, "not measured"),  # the first job only: none warm
        ("cuda:0", "standard", {}, "not measured"),
    ],
)
def test_a_target_not_measured_or_not_applicable_says_so(bench, device, preset, sizes, status):
    results = bench.Results(device="", cpu="", preset=preset, date="")
    results.ready = {"device": device}
    results.sizes = sizes

    assert results.figures()["targets"]["512"]["status"] == status


def test_a_failed_job_is_not_counted_in_the_figures(bench):
    failed = {**_line(0.4, 1, 1), "outcome": "failed", "status": "FAILED"}
    results = bench.Results(device="", cpu="", preset="standard", date="")
    results.ready = {"device": "cuda:0"}
    results.sizes["512"] = [failed, _line(2.4, 1, 1), _line(1.8, 1, 1)]

    size = results.figures()["sizes"]["512"]

    # the failed one may have failed before painting: the first that succeeded is the cold one
    assert size["first"]["seconds"] == 2.4
    assert (size["warmSeconds"], size["warmCount"]) == (1.8, 1)


def test_a_job_that_fails_is_reported_with_its_reason_and_the_next_ones_go_on(tmp_path: Path, bench, monkeypatch):
    """The first job's photo is gone before the worker takes it: the worker fails that job (bad
    input) and paints the next; the benchmark says which failed and why, keeps the others'
    figures (the cold figure is the first job that was painted) and exits 1."""
    made: list[Any] = []
    new_job = bench.Bench.new_job

    def first_without_its_photo(self, options: dict[str, Any]):
        job = new_job(self, options)
        if not made:
            self.s3.delete_object(Bucket=self.bucket, Key=job.input_key)
        made.append(job)
        return job

    monkeypatch.setattr(bench.Bench, "new_job", first_without_its_photo)
    figures_file = tmp_path / "worker.json"

    code = bench.main(["--preset", "preview", "--sizes", "64", "--repeat", "2", "--mixed", "0", "--device", "cpu",
                       "--json", str(figures_file)])  # fmt: skip

    assert code == 1
    figures = json.loads(figures_file.read_text())
    [failed] = figures["failed"]
    assert failed == (
        'job 1 ({"preset": "preview", "size": 64}): failed (StyleTransfer.BadInput: '
        "the content image was not found (uploads expire after a day))"
    )
    jobs = figures["sizes"]["64"]["jobs"]
    assert [(job["outcome"], job["status"]) for job in jobs] == [("failed", "FAILED"), ("succeeded", "SUCCEEDED")]
    assert figures["sizes"]["64"]["first"]["seconds"] == jobs[1]["seconds"]
    assert figures["sizes"]["64"]["warmCount"] == 0
    assert figures["leaving"]["jobsDone"] == 2
