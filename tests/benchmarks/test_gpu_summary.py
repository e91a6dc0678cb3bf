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
                    _row("standard preset 3x200, defaults, history products as one GEMM", 1.25, 600, 81.0),
                ],
                "reached": _row("standard preset 3x100, the defaults", 0.7, 300, 99.0),
            }
        },
        "large": {"size": 2048, "rows": [_row("standard preset at 2048 px, 3x200, the defaults", 15.0, 600, 1.0, 8.5)]},
    }
    (tmp_path / "engine.json").write_text(json.dumps(engine))
    phases = {"imports": 3.0, "model": 0.4, "optimisation": 2.0}
    job = {
        "job": "standard, 512 px",
        "runs": [
            {
                "total": total,
                "phases": phases,
                "background": {"cuda_start": cuda, "clients_download": 0.5},
                "cudaStart": "ready",
                "scales": [_scale([256, 171], setup, 1.2), _scale([512, 341], 0.1, ms)],
                "preparedAhead": False,
            }
            for total, setup, ms, cuda in ((5.5, 0.5, 2.5, 0.3), (6.5, 0.7, 2.7, 0.4), (5.9, 0.4, 2.6, 0.2))
        ],
        "variants": {  # bench_job --variant late_cuda: no thread for CUDA, a longer model phase
            "late_cuda": [
                {"total": total, "phases": {**phases, "model": model}, "background": {"clients_download": 0.5}}
                for total, model in ((6.2, 0.7), (6.4, 0.8), (6.0, 0.6))
            ],
            "ahead": [  # bench_job --variant ahead: the same phases but a shorter optimisation
                {"total": total, "phases": {**phases, "optimisation": 1.6}, "preparedAhead": True}
                for total in (5.5, 5.4, 5.6)
            ],
        },
    }
    (tmp_path / "job.json").write_text(json.dumps(job))

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
        "|   the same with the L-BFGS history products as one GEMM | 1.25 s (+13.6% time, +1.2% score vs the "
        "defaults) |  |",
        "| time to the reference's quality (500 its, 14.0 s) | 0.70 s, 300 its: 20.0x faster | >= 10x |",
        "| standard preset at 2048 px, 3x200, the defaults | 15.0 s, peak 8.5 GiB | fits |",
        "| whole job (standard, 512 px), from process start | median 5.90 s (runs: 5.50, 6.50, 5.90) | < 6 s |",
        "|   imports | median 3.00 s |  |",
        "|   optimisation scale by scale: setup + pace (medians) | 256x171: 0.50 s + 1.20 ms/it; "
        "512x341: 0.10 s + 2.60 ms/it |  |",
        "|   beside them: cuda_start (a thread) | median 0.30 s |  |",
        "|   beside them: clients_download (a thread) | median 0.50 s |  |",
        "|   CUDA's start beside the import | ready |  |",
        "|   each scale made ready while the one before ran | 0 of 3 runs |  |",
        "|   the same with CUDA started by PyTorch after its import (late_cuda) | median 6.20 s (+0.30 s), "
        "model 0.70 s, optimisation 2.00 s |  |",
        "|   the same with each scale made ready while the one before runs (ahead) | median 5.50 s (-0.40 s), "
        "model 0.40 s, optimisation 1.60 s |  |",
    ]
    for line in expected:
        assert line in table, f"{line!r} not in:\n" + "\n".join(table)


def test_a_missing_part_is_a_row_that_says_so(tmp_path):
    table = _summary(tmp_path)
    assert "| GPU tests (tests/agent/test_gpu.py) | not run | all pass |" in table
    assert "| engine benchmark | not run or failed (see bench.txt) |  |" in table
    assert "| whole job | not run or failed (see job.txt) |  |" in table


def test_a_scale_without_a_steady_pace_shows_none(tmp_path):
    """One iteration a scale has no pace between reads: the median says nothing rather than 0 ms."""
    runs = [
        {"total": 1.0, "phases": {"optimisation": 0.5}, "background": {}, "scales": [_scale([64, 43], 0.2, 3.0)]},
        {"total": 1.0, "phases": {"optimisation": 0.5}, "background": {}, "scales": [_scale([64, 43], 0.3, 3.0)]},
    ]
    runs[1]["scales"][0]["msPerIteration"] = None
    (tmp_path / "job.json").write_text(json.dumps({"job": "preview, 64 px", "runs": runs}))
    line = "|   optimisation scale by scale: setup + pace (medians) | 64x43: 0.25 s |  |"
    assert line in _summary(tmp_path).splitlines()


def test_a_thread_still_at_work_and_a_driver_that_said_no_are_shown_as_such(tmp_path):
    runs = [
        {"total": 1.0, "phases": {"model": 0.1}, "background": {"cuda_start": seconds}, "cudaStart": outcome}
        for seconds, outcome in ((0.01, "cuInit returned 100 (CUDA_ERROR_NO_DEVICE)"), (None, "running"))
    ]
    (tmp_path / "job.json").write_text(json.dumps({"job": "preview, 64 px", "runs": runs}))
    table = _summary(tmp_path).splitlines()
    assert "|   beside them: cuda_start (a thread) | still running |  |" in table
    assert "|   CUDA's start beside the import | cuInit returned 100 (CUDA_ERROR_NO_DEVICE), running |  |" in table


def test_when_the_defaults_failed_the_variant_and_the_reason_are_still_rows(tmp_path):
    variant = [{"total": total, "phases": {"model": 0.7}, "background": {}} for total in (6.1, 6.3)]
    reason = "the worker exited with status -6: (nothing on stderr)"
    job = {
        "job": "preset standard, 512 px",
        "runs": [],
        "variants": {"late_cuda": variant},
        "failed": {"defaults": reason},
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    table = _summary(tmp_path).splitlines()
    assert "| whole job (preset standard, 512 px), from process start | failed (see job.txt) | < 6 s |" in table
    assert (
        "|   the same with CUDA started by PyTorch after its import (late_cuda) | median 6.20 s, model 0.70 s |  |"
        in table
    )
    assert f"|   the defaults: failed | {reason} |  |" in table


def test_the_summary_names_every_variant_the_benchmarks_run():
    """The summary imports nothing of the benchmarks (it must come out even when they fail), so it
    keeps their names itself: each of its rows must be one that the benchmarks write, and each
    variant they run must have its row, or a measured figure would silently be left out."""
    summary = load_script(SUMMARY)
    bench_engine = load_benchmark("bench_engine")
    bench_job = load_script(ROOT / "benchmarks" / "bench_job.py")
    changed_defaults = {v.label for v in bench_engine.VARIANTS if v.preset and v.label.startswith("defaults, ")}
    assert {label for label, _ in summary.PRESET_VARIANTS} == changed_defaults
    assert set(summary.VARIANTS) == {"defaults", *bench_job.VARIANTS}
