"""benchmarks/bench_style_previews.py for real: the local stack, one timed PREVIEW_STYLES. Its
figures are not checked (they depend on the machine), only that it measures what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_style_previews.py"


def test_the_benchmark_times_every_style_of_the_catalogue_and_says_on_what():
    done = subprocess.run([sys.executable, str(BENCH), "--repeat", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    about, first, timed, summary = lines
    assert about["benchmark"] == "PREVIEW_STYLES"
    assert {"cpu", "cores", "avx512", "load", "date"} <= set(about)
    assert first["styles"] == timed["styles"] == summary["styles"] == 10  # the seeded catalogue
    assert 0 < timed["first"] <= timed["last"] <= timed["done"]
    assert summary["summary"]["first"] == {"median": timed["first"], "max": timed["first"]}
