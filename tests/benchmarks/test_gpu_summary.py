"""benchmarks/gpu_summary.py: the GPU check's last table, from the files its parts wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.agent.conftest import load_benchmark, load_script

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "benchmarks" / "gpu_summary.py"


def _row(label: str, seconds: float, iterations: int, loss: float, peak: float | None = None, scales=()) -> dict:
    return {
        "label": label,
        "seconds": seconds,
        "iterations": iterations,
        "loss": loss,
        "peak_gib": peak,
        "scales": list(scales),
    }


def _scale(size: list[int], setup: float, ms: float) -> dict:
    return {"size": size, "seconds": setup + 0.2 * ms, "setup": setup, "msPerIteration": ms}


def _summary(directory: Path) -> str:
    done = subprocess.run([sys.executable, str(SUMMARY), str(directory)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_figure_beside_its_target(tmp_path):
    (tmp_path / "tests.txt").write_text("....\n========= 9 passed in 41.20s =========\n")
    engine = {
        "device": "NVIDIA H100 80GB HBM3",
        "torch": "2.11.0+cu130",
        "sizes": {
            "512": {
                "rows": [
                    _row("reference 512x341, 1 scale", 14.0, 500, 100.0),
                    _row("engine the defaults", 1.4, 500, 90.0),
                    _row("standard preset 3x200, TF32, eager (the CUDA defaults before)", 6.5, 600, 85.0),
                    _row(
                        "standard preset 3x200, the defaults",
                        1.1,
                        600,
                        80.0,
                        scales=[
                            _scale([256, 171], 0.05, 1.2),
                            _scale([362, 241], 0.04, 1.8),
                            _scale([512, 341], 0.03, 2.5),
                        ],
                    ),
                ],
                "reached": _row("standard preset 3x100, the defaults", 0.7, 300, 99.0),
            }
        },
        "large": {"size": 2048, "rows": [_row("standard preset at 2048 px, 3x200, the defaults", 15.0, 600, 1.0, 8.5)]},
    }
    (tmp_path / "engine.json").write_text(json.dumps(engine))
    phases = {"download": 0.01, "decode": 0.01, "optimisation": 1.3, "encode_upload": 0.02}
    warm = {"warmCount": 2, "warmPhases": phases, "warmOutside": 0.06, "warmRoundTrip": 1.5}
    worker = {
        "preset": "standard",
        "ready": {"device": "cuda:0", "total": 7.25, "phases": {"imports": 3.5, "clients": 0.1, "model": 0.6,
                                                               "warm_up": 2.4}},
        "sizes": {
            "512": {**warm, "first": {"seconds": 1.9}, "warmSeconds": 1.43, "gpuPeakMiB": 812.4,
                    "warmScales": [_scale([256, 171], 0.05, 1.2), _scale([512, 341], 0.03, 2.5)]},
            "1024": {**warm, "first": {"seconds": 7.1}, "warmSeconds": 6.4, "gpuPeakMiB": 2900.0},
            "2048": {**warm, "first": {"seconds": 30.5}, "warmSeconds": 24.2, "gpuPeakMiB": 9100.0},
        },
        "targets": {
            "512": {"target": 2.0, "warmSeconds": 1.43, "status": "met"},
            "1024": {"target": 6.0, "warmSeconds": 6.4, "status": "missed"},
        },
        "mixed": {
            "memory": {
                "jobs": 30,
                "residentMiB": {"first": 2100.2, "settledAfter": 5, "settled": 2162.0, "max": 2170.4, "last": 2165.1,
                                "growth": 3.1, "maxGrowth": 8.4},
                "gpuPeakMiB": {"first": 300.0, "max": 1800.0, "last": 305.0, "sameJobLargestChange": -10.0},
            }
        },
        "failed": [],
    }  # fmt: skip
    (tmp_path / "worker.json").write_text(json.dumps(worker))

    table = _summary(tmp_path).splitlines()

    assert table[:2] == ["| figure | measured | target |", "| --- | --- | --- |"]
    expected = [
        "| GPU tests (tests/agent/test_gpu.py) | 9 passed | all pass |",
        "| device | NVIDIA H100 80GB HBM3, torch 2.11.0+cu130 |  |",
        "| one iteration at 512 px, 1 scale: reference / defaults | 28.00 / 2.80 ms (10.0x) |  |",
        "| standard preset 3x200 at 512 px, in-process | 1.10 s, score -20.0% vs the reference's | < 1.2 s |",
        "|   scale by scale: setup + pace | 256x171: 0.05 s + 1.20 ms/it; 362x241: 0.04 s + 1.80 ms/it; "
        "512x341: 0.03 s + 2.50 ms/it |  |",
        "|   the same with the old CUDA defaults (TF32, eager) | 6.50 s |  |",
        "| time to the reference's quality (500 its, 14.0 s) | 0.70 s, 300 its: 20.0x faster | >= 10x |",
        "| standard preset at 2048 px, 3x200, the defaults | 15.0 s, peak 8.5 GiB | fits |",
        "| worker start on cuda:0, process start to ready | 7.25 s: imports 3.50, clients 0.10, model 0.60, "
        "warm_up 2.40 |  |",
        "| warm standard job at 512 px, received to answered | 1.43 s: met (median of 2; first at this size 1.90 s; "
        "optimisation 1.30 s, outside the phases 0.06 s, GPU peak 812 MiB) | <= 2.0 s |",
        "|   scale by scale: setup + pace (warm medians) | 256x171: 0.05 s + 1.20 ms/it; 512x341: 0.03 s + "
        "2.50 ms/it |  |",
        "| warm standard job at 1024 px, received to answered | 6.40 s: missed (median of 2; first at this size "
        "7.10 s; optimisation 1.30 s, outside the phases 0.06 s, GPU peak 2900 MiB) | <= 6.0 s |",
        "| warm standard job at 2048 px, received to answered | 24.20 s (median of 2; first at this size 30.50 s; "
        "optimisation 1.30 s, outside the phases 0.06 s, GPU peak 9100 MiB) |  |",
        "| resident memory across 30 mixed jobs | first 2100 MiB, after 5 2162, max 2170, last 2165: +3 MiB after "
        "the first 5 | no growth |",
        "|   GPU peak per mixed job | first 300 MiB, max 1800, last 305; the same job early and late -10 MiB |  |",
    ]
    for line in expected:
        assert line in table, f"{line!r} not in:\n" + "\n".join(table)


def test_a_missing_part_is_a_row_that_says_so(tmp_path):
    table = _summary(tmp_path)
    assert "| GPU tests (tests/agent/test_gpu.py) | not run | all pass |" in table
    assert "| engine benchmark | not run or failed (see bench.txt) |  |" in table
    assert "| warm worker | not run or failed (see worker.txt) |  |" in table


def test_a_worker_that_never_came_up_says_why(tmp_path):
    worker = {"ready": None, "sizes": {}, "failed": ["the worker exited (status 1)"]}
    (tmp_path / "worker.json").write_text(json.dumps(worker))
    assert "| warm worker | not run or failed (the worker exited (status 1)) |  |" in _summary(tmp_path).splitlines()


def test_a_part_stopped_by_its_limit_shows_what_it_measured(tmp_path):
    """bench_worker writes its figures after every job: a check stopped in its 2048 px jobs still
    has the smaller sizes, a size with no warm job yet says so, and the stop is a row."""
    worker = {
        "preset": "standard",
        "ready": {"device": "cuda:0", "total": 7.0, "phases": {"imports": 3.5}},
        "sizes": {
            "512": {"first": {"seconds": 1.9}, "warmSeconds": 1.5, "warmCount": 2, "warmPhases": {},
                    "warmOutside": 0.05, "gpuPeakMiB": None},
            "2048": {"first": {"seconds": 30.5}, "warmSeconds": None, "warmCount": 0, "warmPhases": None,
                     "warmOutside": None, "gpuPeakMiB": 9000.0},
        },
        "targets": {"512": {"target": 2.0, "warmSeconds": 1.5, "status": "met"},
                    "1024": {"target": 6.0, "warmSeconds": None, "status": "not measured"}},
        "mixed": {"jobs": [], "memory": None},
        "failed": ["stopped (SIGTERM) before the last job"],
    }  # fmt: skip
    (tmp_path / "worker.json").write_text(json.dumps(worker))

    table = _summary(tmp_path).splitlines()

    assert (
        "| warm standard job at 512 px, received to answered | 1.50 s: met (median of 2; first at this size 1.90 s; "
        "outside the phases 0.05 s) | <= 2.0 s |"
    ) in table
    assert (
        "| warm standard job at 2048 px, received to answered | no warm job; first at this size 30.50 s |  |"
    ) in table
    assert "| memory across mixed jobs | not measured |  |" in table
    assert "|   worker benchmark: failed | stopped (SIGTERM) before the last job |  |" in table


def test_the_summary_names_every_variant_the_benchmarks_run():
    """The summary imports nothing of the benchmarks (it must come out even when they fail), so it
    keeps their names itself: each of its rows must be one that the benchmarks write, and each
    variant they run must have its row, or a measured figure would silently be left out."""
    summary = load_script(SUMMARY)
    bench_engine = load_benchmark("bench_engine")
    changed_defaults = {v.label for v in bench_engine.VARIANTS if v.preset and v.label.startswith("defaults, ")}
    assert {label for label, _ in summary.PRESET_VARIANTS} == changed_defaults
