"""One table from a GPU check's outputs (benchmarks/gpu_check.sh): the figures the engine's goals
are about, each beside its target.

    python benchmarks/gpu_summary.py DIR      (DIR holds tests.txt, engine.json, worker.json)

A missing or broken part is a row that says so, not a crash: the summary is the last thing a
check prints, and it must come out even when a part failed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

# bench_engine's preset rows of the defaults with something changed (label, the table's words): a
# choice a GPU run should decide. None is open now; a test keeps this in step with bench_engine.
PRESET_VARIANTS: tuple[tuple[str, str], ...] = ()


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tests(directory: Path) -> str:
    try:
        text = (directory / "tests.txt").read_text()
    except OSError:
        return "not run"
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).*?) in [\d.]+s", text, re.M)
    return found[-1].strip(" =") if found else "no result line (see tests.txt)"


def _row(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    return next((row for row in rows if row["label"].startswith(prefix)), None)


def _ms_per_iteration(row: dict[str, Any]) -> float:
    return 1000 * row["seconds"] / row["iterations"]


def _scales(scales: list[dict[str, Any]]) -> str:
    """Each scale's setup (targets, eager warm-up, capture, kernels loaded on first use) and pace."""

    def one(scale: dict[str, Any]) -> str:
        size = "x".join(str(side) for side in scale["size"])
        pace = "" if scale.get("msPerIteration") is None else f" + {scale['msPerIteration']:.2f} ms/it"
        return f"{size}: {scale['setup']:.2f} s{pace}"

    return "; ".join(one(scale) for scale in scales)


def engine_rows(engine: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    if not engine or not engine.get("sizes"):
        return [("engine benchmark", "not run or failed (see bench.txt)", "")]
    size, figures = next(iter(engine["sizes"].items()))
    rows = figures["rows"]
    reference = rows[0]
    out = [("device", f"{engine['device']}, torch {engine['torch']}", "")]
    defaults = _row(rows, "engine the defaults")
    if defaults:
        ref_ms, ours_ms = _ms_per_iteration(reference), _ms_per_iteration(defaults)
        out.append(
            (
                f"one iteration at {size} px, 1 scale: reference / defaults",
                f"{ref_ms:.2f} / {ours_ms:.2f} ms ({ref_ms / ours_ms:.1f}x)",
                "",
            )
        )
    preset_defaults = _row(rows, "standard preset 3x200, the defaults")
    old = _row(rows, "standard preset 3x200, TF32, eager")
    if preset_defaults:
        change = preset_defaults["loss"] / reference["loss"] - 1
        out.append(
            (
                f"standard preset 3x200 at {size} px, in-process",
                f"{preset_defaults['seconds']:.2f} s, score {change:+.1%} vs the reference's",
                "< 1.2 s",
            )
        )
    if preset_defaults and preset_defaults.get("scales"):
        out.append(("  scale by scale: setup + pace", _scales(preset_defaults["scales"]), ""))
    if old:
        out.append(("  the same with the old CUDA defaults (TF32, eager)", f"{old['seconds']:.2f} s", ""))
    for variant, label in PRESET_VARIANTS:
        if changed := _row(rows, f"standard preset 3x200, {variant}"):
            against = ""  # what decides whether it becomes a default: its time and score beside the defaults'
            if preset_defaults:
                time_change = changed["seconds"] / preset_defaults["seconds"] - 1
                score_change = changed["loss"] / preset_defaults["loss"] - 1
                against = f" ({time_change:+.1%} time, {score_change:+.1%} score vs the defaults)"
            out.append((f"  the same with {label}", f"{changed['seconds']:.2f} s{against}", ""))
    reached = figures.get("reached")
    if reached:
        out.append(
            (
                f"time to the reference's quality ({reference['iterations']} its, {reference['seconds']:.1f} s)",
                f"{reached['seconds']:.2f} s, {reached['iterations']} its: "
                f"{reference['seconds'] / reached['seconds']:.1f}x faster",
                ">= 10x",
            )
        )
    else:
        out.append(("time to the reference's quality", "not reached", ">= 10x"))
    for row in (engine.get("large") or {}).get("rows", []):
        peak = f", peak {row['peak_gib']:.1f} GiB" if row.get("peak_gib") is not None else ""
        out.append((row["label"], f"{row['seconds']:.1f} s{peak}", "fits"))
    return out


def worker_rows(worker: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """bench_worker's figures: the worker's start, per size the warm jobs (received to answered)
    beside their targets, and the memory across the mixed jobs."""
    if not worker or not worker.get("ready"):
        failed = "; ".join((worker or {}).get("failed") or []) or "see worker.txt"
        return [("warm worker", f"not run or failed ({failed})", "")]
    ready = worker["ready"]
    phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in ready["phases"].items())
    out = [(f"worker start on {ready.get('device')}, process start to ready", f"{ready['total']:.2f} s: {phases}", "")]
    targets = worker.get("targets") or {}
    for size, figures in (worker.get("sizes") or {}).items():
        label = f"warm {worker.get('preset')} job at {size} px, received to answered"
        target = targets.get(size)
        goal = f"<= {target['target']:.1f} s" if target else ""
        out.append((label, _warm(figures, target), goal))
        if figures.get("warmScales"):
            out.append(("  scale by scale: setup + pace (warm medians)", _scales(figures["warmScales"]), ""))
    out += _memory_rows((worker.get("mixed") or {}).get("memory"))
    if worker.get("failed"):
        out.append(("  worker benchmark: failed", "; ".join(worker["failed"]), ""))
    return out


def _warm(figures: dict[str, Any], target: dict[str, Any] | None) -> str:
    first = figures.get("first")
    cold = f"first at this size {first['seconds']:.2f} s" if first else "no job succeeded"
    if figures.get("warmSeconds") is None:
        return f"no warm job; {cold}"
    optimisation = (figures.get("warmPhases") or {}).get("optimisation")
    parts = [f"median of {figures['warmCount']}", cold]
    parts.append(", ".join(
        [*([f"optimisation {optimisation:.2f} s"] if optimisation is not None else []),
         f"outside the phases {figures['warmOutside']:.2f} s",
         *([f"GPU peak {figures['gpuPeakMiB']:.0f} MiB"] if figures.get("gpuPeakMiB") is not None else [])]
    ))  # fmt: skip
    status = f": {target['status']}" if target else ""
    return f"{figures['warmSeconds']:.2f} s{status} ({'; '.join(parts)})"


def _memory_rows(memory: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    if not memory:
        return [("memory across mixed jobs", "not measured", "")]
    resident = memory["residentMiB"]
    out = [
        (
            f"resident memory across {memory['jobs']} mixed jobs",
            f"first {resident['first']:.0f} MiB, after {resident['settledAfter']} {resident['settled']:.0f}, "
            f"max {resident['max']:.0f}, last {resident['last']:.0f}: {resident['growth']:+.0f} MiB "
            f"after the first {resident['settledAfter']}",
            "no growth",
        )
    ]
    if peak := memory.get("gpuPeakMiB"):
        same = peak.get("sameJobLargestChange")
        early_late = "" if same is None else f"; the same job early and late {same:+.0f} MiB"
        out.append(
            (
                "  GPU peak per mixed job",
                f"first {peak['first']:.0f} MiB, max {peak['max']:.0f}, last {peak['last']:.0f}{early_late}",
                "",
            )
        )
    return out


def summary(directory: Path) -> str:
    rows = [("GPU tests (tests/agent/test_gpu.py)", _tests(directory), "all pass")]
    rows += engine_rows(_load(directory / "engine.json"))
    rows += worker_rows(_load(directory / "worker.json"))
    lines = ["| figure | measured | target |", "| --- | --- | --- |"]
    lines += [f"| {label} | {value} | {target} |" for label, value, target in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(summary(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
