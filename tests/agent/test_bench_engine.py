"""agent/benchmarks/bench_engine.py for real, tiny: every row it promises, with sane figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch
from styletransfer import preset

from .conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "agent" / "benchmarks" / "bench_engine.py"
bench_engine = load_benchmark("bench_engine")
ROW = r"^{label}\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\S+)\s+(\d+\.\d+)x\s+(\d+\.\d+)\s*$"


def bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--sizes", "64", "--iterations", "6", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_ablation_prints_the_reference_each_variant_the_preset_and_the_time_to_quality():
    out = bench("--variants", "fp32", "bf16", "tf32_graph", "defaults", "--preset-iterations", "2", "--large", "96")
    assert "skipped on the CPU (they need CUDA): tf32_graph" in out
    rows = {}
    for label in (
        "reference 64x43, 1 scale",
        "engine fp32, NCHW, eager",
        "engine bf16 network, eager",
        "engine the defaults",
        "preview preset 3x2, the defaults",
    ):
        match = re.search(ROW.format(label=re.escape(label)), out, re.M)
        assert match, f"no row {label!r} in:\n{out}"
        seconds, per_second, loss, speed_up, ratio = match.groups()
        assert min(float(seconds), float(per_second), float(loss)) > 0
        rows[label] = (float(speed_up), float(ratio))
    assert rows["reference 64x43, 1 scale"] == (1.0, 1.0)
    assert 0.5 < rows["engine fp32, NCHW, eager"][1] < 1.5  # the same objective, the same iterations
    # time to quality: rungs of ever more iterations per scale, the last one as good as the reference
    rungs = re.findall(ROW.format(label=r"preview preset 3x(\d+), the defaults"), out, re.M)
    assert rungs, out
    assert float(rungs[-1][-1]) <= 1.0  # its score over the reference's
    summary = re.search(r"engine defaults: (\d+\.\d+) s, (\d+) iterations .*; (\d+\.\d+)x faster", out)
    assert summary, out
    scales = len(preset("preview", size=64).scale_sizes())  # at 64 px its three scales are one
    assert int(summary.group(2)) == scales * int(rungs[-1][0])
    assert re.search(r"per iteration at full size \(defaults, 1 scale\): \d+\.\dx faster", out), out
    # the large run: the standard preset at --large, without a reference to compare with, and at
    # 96 px its three scales, each with its setup and its pace
    large = r"^standard preset at 96 px, 3x2, the defaults\s+\d+\.\d+\s+\d+\.\d+\s+\S+\s*$"
    assert re.search(large, out, re.M), out
    scale = r"(\d+x\d+): setup -?\d+\.\d+ s \+ \d+\.\d+ ms/it"
    by_scale = re.search(rf"^standard preset at 96 px, .*\n  scales: {scale}; {scale}; {scale}$", out, re.M)
    assert by_scale, out
    assert by_scale.groups() == ("64x43", "68x45", "96x64")


def test_an_unknown_variant_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--variants", "warp"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "unknown variant(s) warp: choose from all, fp32, channels_last" in done.stderr


def test_a_failing_variant_is_a_line_and_the_benchmark_goes_on(capsys):
    def broken():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")

    cpu = torch.device("cpu")
    assert bench_engine._attempt(cpu, "engine bf16_graph", broken) is None
    assert (
        capsys.readouterr().out
        == "engine bf16_graph: failed (RuntimeError: CUDA error: operation not permitted when stream is capturing)\n"
    )
    row = bench_engine._attempt(cpu, "works", lambda: bench_engine.Outcome(3, 1.5))
    assert (row.label, row.iterations, row.loss) == ("works", 3, 1.5)
