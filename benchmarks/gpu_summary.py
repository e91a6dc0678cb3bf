"""One table from a GPU check's outputs (benchmarks/gpu_check.sh): the figures the engine's goals
are about, each beside its target.

    python benchmarks/gpu_summary.py DIR      (DIR holds tests.txt, engine.json, job.json)

A missing or broken part is a row that says so, not a crash: the summary is the last thing a
check prints, and it must come out even when a part failed.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

# bench_job's --variant names, as the table words them (kept here: the summary imports nothing of the benchmarks)
VARIANTS = {
    "defaults": "the defaults",
    "late_cuda": "CUDA started by PyTorch after its import (late_cuda)",
    "ahead": "each scale made ready while the one before runs (ahead)",
}

# bench_engine's preset rows of the defaults with something changed: its label -> the table's words
PRESET_VARIANTS = (("defaults, history products as one GEMM", "the L-BFGS history products as one GEMM"),)


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


def job_rows(job: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    if not job or not (job.get("runs") or any((job.get("variants") or {}).values())):
        return [("whole job", "not run or failed (see job.txt)", "")]
    runs = job["runs"]
    totals = [run["total"] for run in runs]
    title = f"whole job ({job.get('job', '')}), from process start"
    if runs:
        out = [
            (
                title,
                f"median {statistics.median(totals):.2f} s (runs: {', '.join(f'{t:.2f}' for t in totals)})",
                "< 6 s",
            )
        ]
        out += _phase_rows(runs)
    else:  # the defaults failed; a variant's runs may still say something
        out = [(title, "failed (see job.txt)", "< 6 s")]
    for name, variant_runs in (job.get("variants") or {}).items():  # bench_job --variant, run alternately
        if variant_runs:
            total = statistics.median(run["total"] for run in variant_runs)
            model = statistics.median(run["phases"]["model"] for run in variant_runs)
            change = f" ({total - statistics.median(totals):+.2f} s)" if totals else ""
            optimisation = [run["phases"]["optimisation"] for run in variant_runs if "optimisation" in run["phases"]]
            also = f", optimisation {statistics.median(optimisation):.2f} s" if optimisation else ""
            out.append(
                (
                    f"  the same with {VARIANTS.get(name, name)}",
                    f"median {total:.2f} s{change}, model {model:.2f} s{also}",
                    "",
                )
            )
    for name, reason in (job.get("failed") or {}).items():  # bench_job stops an arm at its first failure
        out.append((f"  {VARIANTS.get(name, name)}: failed", reason, ""))
    return out


def _phase_rows(runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The phases' medians, the optimisation scale by scale, the threads and CUDA's start."""
    out = []
    for phase in runs[0]["phases"]:
        out.append((f"  {phase}", f"median {statistics.median(run['phases'][phase] for run in runs):.2f} s", ""))
    if all(run.get("scales") for run in runs):  # medians, scale by scale: a fresh process's per size
        medians = []
        for index, scale in enumerate(runs[0]["scales"]):
            paces = [run["scales"][index]["msPerIteration"] for run in runs]
            medians.append(
                {
                    "size": scale["size"],
                    "setup": statistics.median(run["scales"][index]["setup"] for run in runs),
                    # no pace where a run had none (one iteration a scale), as bench_job prints it
                    "msPerIteration": None if None in paces else statistics.median(paces),
                }
            )
        out.append(("  optimisation scale by scale: setup + pace (medians)", _scales(medians), ""))
    for name in runs[0].get("background", {}):
        values = [run["background"].get(name) for run in runs]
        # None: the thread was still at work when the worker wrote its line
        seconds = "still running" if None in values else f"median {statistics.median(values):.2f} s"
        out.append((f"  beside them: {name} (a thread)", seconds, ""))
    if outcomes := sorted({run["cudaStart"] for run in runs if "cudaStart" in run}):
        out.append(("  CUDA's start beside the import", ", ".join(outcomes), ""))
    if said := [run["preparedAhead"] for run in runs if "preparedAhead" in run]:
        out.append(("  each scale made ready while the one before ran", f"{sum(said)} of {len(said)} runs", ""))
    return out


def summary(directory: Path) -> str:
    rows = [("GPU tests (tests/agent/test_gpu.py)", _tests(directory), "all pass")]
    rows += engine_rows(_load(directory / "engine.json"))
    rows += job_rows(_load(directory / "job.json"))
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
