"""benchmarks/bench_stack.py for real, with a few clients: the local stack's pieces in one process,
real WebSocket clients, a broadcast through the real NotifyFunction. Its figures are not checked
(they depend on the machine), only that it runs from a clean environment and measures what it
says: every client connected, reached by the broadcast and answered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_stack.py"


def test_the_benchmark_reaches_every_client_and_prints_each_measure():
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH"} and not key.startswith("AWS_")}
    done = subprocess.run([sys.executable, str(BENCH), "--clients", "5", "--timeout", "240"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        label.strip(): [int(value) for value in values.split("|")]
        for label, values in re.findall(r"^\| ([^|]+?) \| +(\d+ \| +\d+ \| +\d+ \| +\d+) \|$", done.stdout, re.M)
    }
    assert set(rows) == {
        "connect (5 of 5 at once)",
        "broadcast: queue -> client (5 of 5 reached)",
        "of which NotifyFunction's invocation",
        "LIST_STYLES round trip, 5 clients at once",
        "LIST_STYLES round trip, one client, 5 connected",
        "ListStylesFunction's invocations",
    }, done.stdout
    for label, (p50, p95, worst, n) in rows.items():
        assert 0 <= p50 <= p95 <= worst, label
        assert n >= 1, label
    assert rows["connect (5 of 5 at once)"][3] == 5
