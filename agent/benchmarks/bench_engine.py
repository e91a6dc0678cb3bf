"""Engine benchmark: each fast path beside the plain fp32 reference, on one fixed content/style pair.

    python agent/benchmarks/bench_engine.py [--sizes 512] [--iterations 500] [--variants all]
                                            [--preset-iterations N] [--large 2048] [--device auto]

For each size, in one process after a warm-up (so ratios compare like with like):
- the reference: fp32 (TF32 off), NCHW, torch's L-BFGS, one scale, `--iterations` iterations;
- the engine on the same objective, scale and iterations, once per fast-path variant (below);
- the device's preset (GPU: `standard`, 3 x 200; CPU: `preview`, 3 x 60; `--preset-iterations`
  per scale instead), coarse to fine, with the variants marked `preset` in VARIANTS;
- time to quality: the defaults in the preset's shape with ever more iterations per scale until
  the result is as good as the reference's after its `--iterations`, then one summary: that time
  and those iterations against the reference's, beside the speed-up of one iteration.
Each row has wall seconds (compilation and capture included), iterations per second, the score
(the reference's fp32 objective on the final 8-bit image: one objective for every row), the
speed-up and score ratio against the reference, and on a GPU the peak memory. `--large` then runs
the `standard` preset at that size (GPU default: 2048 px) with the old and the new CUDA defaults,
for time and memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from styletransfer import Options, Plan, preset, resolve_plan, run
from styletransfer.device import pick_device
from styletransfer.images import fit_size, to_image
from styletransfer.reference import Scorer, reference_stylize
from styletransfer.samples import benchmark_pair, swirls
from styletransfer.vgg import from_caffe
from styletransfer.weights import load_vgg19_weights

NEURAL_STYLE_HISTORY = 100  # the L-BFGS history of jcjohnson/neural-style and of the reference


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    plan: dict[str, Any]  # how it runs: requests to resolve_plan, beside the device
    history: int | None = NEURAL_STYLE_HISTORY  # L-BFGS pairs kept; None: the default (Options.history)
    cuda_only: bool = False  # no effect or not available on a CPU
    preset: bool = False  # also measured with the preset
    last: bool = False  # measured after everything else (its compilation takes minutes on a GPU)

    def options(self, base: Options) -> Options:
        return base if self.history is None else base.replace(history=self.history)

    def plan_on(self, device: torch.device) -> Plan:
        return resolve_plan(str(device), **self.plan)


# Every variant but "defaults" states its settings in full, so that the rows do not move when the
# defaults do; the history is neural-style's 100 unless a variant is about it.
FP32 = {"precision": "fp32", "capture": "none"}
VARIANTS: tuple[Variant, ...] = (
    Variant("fp32", "fp32, NCHW, eager", {**FP32, "channels_last": False, "tf32": False}),
    Variant("channels_last", "fp32, channels-last", {**FP32, "channels_last": True, "tf32": False}),
    Variant("tf32", "TF32, eager (the CUDA defaults before)", {**FP32, "tf32": True}, cuda_only=True, preset=True),
    Variant("autotune", "TF32 + cuDNN autotuning", {**FP32, "deterministic": False}, cuda_only=True),
    Variant("bf16", "bf16 network, eager", {"precision": "bf16", "capture": "none"}),
    Variant("tf32_graph", "TF32 + CUDA graph", {"precision": "fp32", "capture": "cuda_graph"}, cuda_only=True),
    Variant(
        "bf16_graph",
        "bf16 + CUDA graph, history 100",
        {"precision": "bf16", "capture": "cuda_graph"},
        cuda_only=True,
        preset=True,
    ),
    Variant("bf16_compile", "bf16 + torch.compile", {"precision": "bf16", "capture": "compile"}, last=True),
    Variant("defaults", "the defaults", {}, history=None, preset=True),
)
CPU_DEFAULT = ("fp32", "channels_last", "bf16", "defaults")
# At --large: the old and the new CUDA defaults
LARGE = ("tf32", "defaults")


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    iterations: int
    loss: float  # the reference objective on the 8-bit result (the engine's own at --large)
    peak_gib: float | None
    scales: tuple[dict[str, Any], ...] = ()  # the engine's, scale by scale (ScaleTiming.summary)


@dataclass(frozen=True)
class Outcome:
    """What a measured piece of work hands back: its iterations, its image (scored) or its own
    loss, and for the engine each scale's setup and pace."""

    iterations: int
    result: Image.Image | float
    scales: tuple[dict[str, Any], ...] = ()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Work = Callable[[], Outcome]


def _measured(device: torch.device, label: str, work: Work, scorer: Scorer | None = None) -> Row:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    outcome = work()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    result = outcome.result
    loss = scorer.score(result) if isinstance(result, Image.Image) and scorer else float(result)
    return Row(label, seconds, outcome.iterations, loss, peak, outcome.scales)


def _attempt(device: torch.device, label: str, work: Work, scorer: Scorer | None = None) -> Row | None:
    """A variant's row; if it fails, a line that says so, and the benchmark goes on to the next
    (a GPU session is short: one broken variant must not cost the others' figures)."""
    try:
        return _measured(device, label, work, scorer)
    except Exception as failure:  # e.g. a CUDA error in a variant that was never run on a GPU
        reason = (str(failure).splitlines() or [""])[0][:200]
        print(f"{label}: failed ({type(failure).__name__}: {reason})", flush=True)
        return None


@contextlib.contextmanager
def plain_fp32() -> Iterator[None]:
    """The reference as written: fp32 convolutions (torch enables TF32 for cuDNN by default)."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        yield


def engine_run(content: Image.Image, style: Image.Image, options: Options, plan: Plan, image: bool = True) -> Work:
    def work() -> Outcome:
        result = run(content, style, options, plan=plan)
        scales = tuple(timing.summary() for timing in result.scales)
        return Outcome(result.iterations, result.image if image else result.loss, scales)

    return work


def standard_shape(device: torch.device, size: int, iterations: int | None = None) -> tuple[str, Options]:
    """The device's preset at `size` ("standard" on a GPU, "preview" on a CPU), with `iterations`
    per scale if given."""
    name = "standard" if device.type == "cuda" else "preview"
    changes: dict[str, Any] = {"size": size}
    if iterations:
        changes["iterations"] = iterations
    return name, preset(name, **changes)


def bench(
    size: int, iterations: int, preset_iterations: int | None, device: torch.device, variants: list[Variant]
) -> tuple[list[Row], Scorer]:
    content_image, style_image = benchmark_pair()
    scorer = Scorer(content_image, style_image, size, device=device)
    width, height = fit_size(*content_image.size, size)

    def engine(variant: Variant, options: Options) -> Work:
        return engine_run(content_image, style_image, variant.options(options), variant.plan_on(device))

    def reference() -> Outcome:
        with plain_fp32():
            image, _ = reference_stylize(scorer.content, scorer.style, iterations)
        return Outcome(iterations, to_image(from_caffe(image)))

    rows = [_measured(device, f"reference {width}x{height}, 1 scale", reference, scorer)]
    rows += single_scale(size, iterations, device, [variant for variant in variants if not variant.last], scorer)
    name, tuned = standard_shape(device, size, preset_iterations)
    label = f"{name} preset {tuned.scales}x{tuned.iterations}"
    for variant in variants:
        if variant.preset and (row := _attempt(device, f"{label}, {variant.label}", engine(variant, tuned), scorer)):
            rows.append(row)
    return rows, scorer


def single_scale(
    size: int, iterations: int, device: torch.device, variants: list[Variant], scorer: Scorer
) -> list[Row]:
    """The engine on the reference's objective, scale and iterations, once per variant."""
    content_image, style_image = benchmark_pair()
    single = Options(size=size, iterations=iterations, scales=1)
    rows = []
    for variant in variants:
        work = engine_run(content_image, style_image, variant.options(single), variant.plan_on(device))
        if row := _attempt(device, f"engine {variant.label}", work, scorer):
            rows.append(row)
    return rows


LADDER = (10, 15, 20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500)


def time_to_quality(device: torch.device, size: int, scorer: Scorer, reference: Row) -> list[Row]:
    """The engine's defaults in the preset's shape with ever more iterations per scale, until the
    result scores no worse than the reference's after its run (one objective, the 8-bit images):
    each rung is a whole run from scratch, so its seconds are what a job with that many
    iterations takes."""
    content_image, style_image = benchmark_pair()
    name, shaped = standard_shape(device, size)
    defaults = resolve_plan(str(device))
    rows = []
    for per_scale in LADDER:
        options = shaped.replace(iterations=per_scale)
        label = f"{name} preset {options.scales}x{per_scale}, the defaults"
        row = _measured(device, label, engine_run(content_image, style_image, options, defaults), scorer)
        rows.append(row)
        if row.loss <= reference.loss:
            break
    return rows


def large(size: int, iterations: int | None, device: torch.device, variants: list[Variant]) -> list[Row]:
    content_image, style_image = benchmark_pair()
    tuned = preset("standard", size=size)
    tuned = tuned.replace(iterations=iterations) if iterations else tuned
    label = f"standard preset at {size} px, {tuned.scales}x{tuned.iterations}"
    return [
        _measured(
            device,
            f"{label}, {variant.label}",
            engine_run(content_image, style_image, variant.options(tuned), variant.plan_on(device), False),
        )
        for variant in variants
        if variant.key in LARGE
    ]


def profile(size: int, iterations: int, device: torch.device) -> None:
    """The kernels that take the time of `iterations` iterations with the defaults at one scale,
    after a run that loads everything (torch.profiler; on a CPU, its operators)."""
    content_image, style_image = benchmark_pair()
    options, plan = Options(size=size, iterations=iterations, scales=1), resolve_plan(str(device))
    run(content_image, style_image, options, plan=plan)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        run(content_image, style_image, options, plan=plan)
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(f"profile: {iterations} iterations of the defaults at {size} px, one scale (captures included)")
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=25, max_name_column_width=60))
    sys.stdout.flush()


def print_rows(rows: list[Row], reference: Row | None, loss: str = "score") -> None:
    print(f"{'run':58} {'wall s':>8} {'it/s':>8} {loss:>11} {'speed-up':>9} {'loss/ref':>9} {'peak GiB':>9}")
    for row in rows:
        speed_up = f"{reference.seconds / row.seconds:8.2f}x" if reference else f"{'':9}"
        ratio = f"{row.loss / reference.loss:9.4f}" if reference else f"{'':9}"
        peak = f"{row.peak_gib:9.2f}" if row.peak_gib is not None else f"{'':9}"
        it_s = row.iterations / row.seconds
        print(f"{row.label:58} {row.seconds:8.2f} {it_s:8.1f} {row.loss:11.5g} {speed_up} {ratio} {peak}")
        if len(row.scales) > 1:
            print(f"  {scale_line(row.scales)}")
    sys.stdout.flush()


def scale_line(scales: tuple[dict[str, Any], ...]) -> str:
    """A multi-scale run, scale by scale: each size's setup (targets, eager warm-up, capture,
    kernels loaded on first use) and its iterations' steady pace."""

    def one(scale: dict[str, Any]) -> str:
        size = "x".join(str(side) for side in scale["size"])
        pace = "" if scale["msPerIteration"] is None else f" + {scale['msPerIteration']:.2f} ms/it"
        return f"{size}: setup {scale['setup']:.3f} s{pace}"

    return "scales: " + "; ".join(one(scale) for scale in scales)


def reached_quality(ladder: list[Row], reference: Row) -> Row | None:
    """The ladder's rung that scored as well as the reference, if it got there (it stops there)."""
    return ladder[-1] if ladder and ladder[-1].loss <= reference.loss else None


def print_time_to_quality(rows: list[Row], reached: Row | None, reference: Row) -> None:
    """The summary users care about: how long until the reference's quality, beside the speed of
    one iteration."""
    by_label = {row.label: row for row in rows}
    defaults = by_label.get("engine the defaults")
    print(f"time to the reference's quality (its score after {reference.iterations} iterations, {reference.loss:.5g}):")
    print(f"  reference: {reference.seconds:.2f} s, {reference.iterations} iterations")
    if reached is None:
        print(f"  engine defaults: not reached within {LADDER[-1]} iterations per scale")
    else:
        print(
            f"  engine defaults: {reached.seconds:.2f} s, {reached.iterations} iterations ({reached.label}); "
            f"{reference.seconds / reached.seconds:.1f}x faster"
        )
    if defaults is not None:
        per_iteration = (reference.seconds / reference.iterations) / (defaults.seconds / defaults.iterations)
        print(f"  per iteration at full size (defaults, 1 scale): {per_iteration:.1f}x faster")
    sys.stdout.flush()


def chosen_variants(keys: list[str] | None, on_gpu: bool) -> list[Variant]:
    by_key = {variant.key: variant for variant in VARIANTS}
    if keys is None:
        keys = list(by_key) if on_gpu else list(CPU_DEFAULT)
    elif keys == ["all"]:
        keys = list(by_key)
    unknown = [key for key in keys if key not in by_key]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}: choose from all, {', '.join(by_key)}")
    chosen = [by_key[key] for key in keys]
    skipped = [variant.key for variant in chosen if variant.cuda_only and not on_gpu]
    if skipped:
        print(f"skipped on the CPU (they need CUDA): {', '.join(skipped)}")
    return [variant for variant in chosen if on_gpu or not variant.cuda_only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", help="long sides (default: 256 on CPU, 512 on GPU)")
    parser.add_argument("--iterations", type=int, help="single-scale iterations (default: 50 on CPU, 500 on GPU)")
    keys = ", ".join(variant.key for variant in VARIANTS)
    parser.add_argument("--variants", nargs="+", help=f"fast paths to measure: all, {keys}")
    parser.add_argument("--preset-iterations", type=int, help="per scale in the preset rows (default: the preset's)")
    parser.add_argument("--large", type=int, help="also run the preset at this size (default: 2048 on GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--profile", type=int, default=0, help="first: where N iterations of the defaults spend their GPU time"
    )
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    sizes = args.sizes or ([512] if on_gpu else [256])
    iterations = args.iterations or (500 if on_gpu else 50)
    variants = chosen_variants(args.variants, on_gpu)
    name = (
        torch.cuda.get_device_name(device)
        if on_gpu
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; torch {torch.__version__}; {iterations} iterations for the single-scale runs")
    load_vgg19_weights()
    warm = Options(size=64, iterations=4, scales=1)
    run(
        swirls(64), swirls(64, seed=1), warm, plan=resolve_plan(str(device))
    )  # CUDA context, cuDNN handles, the model on the device
    if args.profile:
        profile(sizes[0], args.profile, device)
    figures: dict[str, Any] = {"device": name, "torch": torch.__version__, "sizes": {}}
    references: list[tuple[int, Row, Scorer]] = []
    for size in sizes:
        rows, scorer = bench(size, iterations, args.preset_iterations, device, variants)
        print_rows(rows, rows[0])
        ladder = time_to_quality(device, size, scorer, rows[0])
        print_rows(ladder, rows[0])
        reached = reached_quality(ladder, rows[0])
        print_time_to_quality(rows, reached, rows[0])
        references.append((size, rows[0], scorer))
        figures["sizes"][str(size)] = {
            "rows": [asdict(row) for row in rows],
            "ladder": [asdict(row) for row in ladder],
            "reached": asdict(reached) if reached else None,
        }
    large_size = args.large if args.large is not None else (2048 if on_gpu else 0)
    if large_size:
        large_rows = large(large_size, args.preset_iterations, device, variants)
        print_rows(large_rows, None, loss="own loss")
        figures["large"] = {"size": large_size, "rows": [asdict(row) for row in large_rows]}
    if args.json:  # now, and again after the last variants: a run stopped during them keeps the rest
        args.json.write_text(json.dumps(figures, indent=1))
    if last := [variant for variant in variants if variant.last]:
        for size, reference, scorer in references:
            late = single_scale(size, iterations, device, last, scorer)
            print_rows([reference, *late], reference)
            figures["sizes"][str(size)]["rows"] += [asdict(row) for row in late]
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
