"""Engine benchmark: each fast path beside the plain fp32 reference, on one fixed content/style pair.

    python agent/benchmarks/bench_engine.py [--sizes 512] [--iterations 600] [--variants all]
                                            [--large 2048] [--device auto]

For each size, in one process after a warm-up (so ratios compare like with like):
- the reference: fp32 (TF32 off), NCHW, torch's L-BFGS, one scale, `--iterations` iterations;
- the engine on the same objective, scale and iterations, once per fast-path variant (below);
- the engine's preset for the device, coarse to fine, with as many iterations in all as the
  reference ran (GPU: `standard`, 3 x 200 = 600), with its default settings and with the variants
  marked `preset` in VARIANTS;
each with wall seconds (compilation and capture included), iterations per second, final loss at
the full size, speed-up and loss ratio against the reference, and on a GPU the peak memory.
`--large` then runs the preset at that size (GPU default: 2048 px) to show its time and memory.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from styletransfer import Options, preset, run
from styletransfer.device import pick_device
from styletransfer.images import fit_size, resize_tensor, resized, to_tensor
from styletransfer.reference import reference_stylize
from styletransfer.samples import benchmark_pair, swirls
from styletransfer.vgg import to_caffe
from styletransfer.weights import load_vgg19_weights


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    changes: dict[str, Any]
    cuda_only: bool = False  # no effect or not available on a CPU
    preset: bool = False  # also measured with the preset


# Fields a variant does not set keep the device's defaults: channels-last and TF32 on CUDA, not on a CPU.
FP32 = {"precision": "fp32"}
GRAPH = {"capture": "cuda_graph"}
VARIANTS: tuple[Variant, ...] = (
    Variant("fp32", "fp32, NCHW, eager", {**FP32, "channels_last": False, "tf32": False}),
    Variant("channels_last", "fp32, channels-last", {**FP32, "channels_last": True, "tf32": False}),
    Variant("tf32", "TF32 convs (the CUDA defaults)", {**FP32, "tf32": True}, cuda_only=True),
    Variant("autotune", "TF32 + cuDNN autotuning", {**FP32, "deterministic": False}, cuda_only=True),
    Variant("bf16", "bf16 convs", {"precision": "bf16"}),
    Variant("tf32_graph", "TF32 + CUDA graph", {**FP32, **GRAPH}, cuda_only=True, preset=True),
    Variant("bf16_graph", "bf16 + CUDA graph", {"precision": "bf16", **GRAPH}, cuda_only=True, preset=True),
    Variant("tf32_compile", "TF32 + torch.compile", {**FP32, "capture": "compile"}),
)
CPU_DEFAULT = ("fp32", "channels_last", "bf16")


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    iterations: int
    loss: float
    peak_gib: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measured(device: torch.device, label: str, work: Callable[[], tuple[int, float]]) -> Row:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    iterations, loss = work()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Row(label, seconds, iterations, loss, peak)


@contextlib.contextmanager
def plain_fp32() -> Iterator[None]:
    """The reference as written: fp32 convolutions (torch enables TF32 for cuDNN by default)."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        yield


def engine_run(content: Image.Image, style: Image.Image, options: Options) -> Callable[[], tuple[int, float]]:
    def work() -> tuple[int, float]:
        result = run(content, style, options)
        return result.iterations, result.loss

    return work


def bench(size: int, iterations: int, device: torch.device, variants: list[Variant]) -> list[Row]:
    content_image, style_image = benchmark_pair()
    width, height = fit_size(*content_image.size, size)
    content = to_caffe(to_tensor(resized(content_image, size))).to(device)
    style = to_caffe(resize_tensor(to_tensor(resized(style_image, size)), (size, size))).to(device)
    on_gpu = device.type == "cuda"

    def engine(options: Options) -> Callable[[], tuple[int, float]]:
        return engine_run(content_image, style_image, options)

    def reference() -> tuple[int, float]:
        with plain_fp32():
            return iterations, reference_stylize(content, style, iterations)[1]

    rows = [_measured(device, f"reference {width}x{height}, 1 scale", reference)]
    single = Options(size=size, iterations=iterations, scales=1, device=str(device))
    for variant in variants:
        rows.append(_measured(device, f"engine {variant.label}", engine(single.replace(**variant.changes))))
    name = "standard" if on_gpu else "preview"
    scales = preset(name).scales
    tuned = preset(name, size=size, device=str(device), iterations=max(1, iterations // scales))
    label = f"{name} preset {tuned.scales}x{tuned.iterations}"
    rows.append(_measured(device, f"{label}, defaults", engine(tuned)))
    for variant in variants:
        if variant.preset:
            rows.append(_measured(device, f"{label}, {variant.label}", engine(tuned.replace(**variant.changes))))
    return rows


def large(size: int, device: torch.device, variants: list[Variant]) -> list[Row]:
    content_image, style_image = benchmark_pair()
    tuned = preset("standard", size=size, device=str(device))
    label = f"standard preset at {size} px, {tuned.scales}x{tuned.iterations}"
    runs = [({}, "defaults")] + [(variant.changes, variant.label) for variant in variants if variant.preset]
    return [
        _measured(device, f"{label}, {name}", engine_run(content_image, style_image, tuned.replace(**changes)))
        for changes, name in runs
    ]


def print_rows(rows: list[Row], reference: Row | None) -> None:
    print(f"{'run':58} {'wall s':>8} {'it/s':>8} {'final loss':>11} {'speed-up':>9} {'loss/ref':>9} {'peak GiB':>9}")
    for row in rows:
        speed_up = f"{reference.seconds / row.seconds:8.2f}x" if reference else f"{'':9}"
        ratio = f"{row.loss / reference.loss:9.4f}" if reference else f"{'':9}"
        peak = f"{row.peak_gib:9.2f}" if row.peak_gib is not None else f"{'':9}"
        it_s = row.iterations / row.seconds
        print(f"{row.label:58} {row.seconds:8.2f} {it_s:8.1f} {row.loss:11.5g} {speed_up} {ratio} {peak}")
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
    parser.add_argument("--iterations", type=int, help="single-scale iterations (default: 50 on CPU, 600 on GPU)")
    keys = ", ".join(variant.key for variant in VARIANTS)
    parser.add_argument("--variants", nargs="+", help=f"fast paths to measure: all, {keys}")
    parser.add_argument("--large", type=int, help="also run the preset at this size (default: 2048 on GPU)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    sizes = args.sizes or ([512] if on_gpu else [256])
    iterations = args.iterations or (600 if on_gpu else 50)
    variants = chosen_variants(args.variants, on_gpu)
    name = (
        torch.cuda.get_device_name(device)
        if on_gpu
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; torch {torch.__version__}; {iterations} iterations for the single-scale runs")
    load_vgg19_weights()
    warm = Options(size=64, iterations=4, scales=1, device=str(device))
    run(swirls(64), swirls(64, seed=1), warm)  # CUDA context, cuDNN handles, the model on the device
    for size in sizes:
        rows = bench(size, iterations, device, variants)
        print_rows(rows, rows[0])
    large_size = args.large if args.large is not None else (2048 if on_gpu else 0)
    if large_size:
        print_rows(large(large_size, device, variants), None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
