"""Engine benchmark: figures for one fixed content/style pair, beside the plain reference.

    python agent/benchmarks/bench_engine.py [--sizes 256] [--iterations 50] [--device auto]

For each size it prints, for the reference (fp32, single-scale L-BFGS, no optimisations) and
for the engine with the same objective, iterations and scale: wall seconds, iterations per
second and final loss, and the ratio between them; then the engine's preset for that device
(coarse to fine) with its final loss at the same size. Both run in this process, one after the
other, after a warm-up, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
from styletransfer import Options, preset, run
from styletransfer.device import pick_device
from styletransfer.images import fit_size, resize_tensor, resized, to_tensor
from styletransfer.reference import reference_stylize
from styletransfer.samples import photos, swirls
from styletransfer.vgg import to_caffe
from styletransfer.weights import load_vgg19_weights


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, work):
    _sync(device)
    start = time.perf_counter()
    value = work()
    _sync(device)
    return value, time.perf_counter() - start


def bench(size: int, iterations: int, device: torch.device) -> list[tuple[str, float, int, float]]:
    content_image = photos().get("chelsea") or swirls(seed=7)
    style_image = swirls()
    width, height = fit_size(*content_image.size, size)
    content = to_caffe(to_tensor(resized(content_image, size))).to(device)
    style = to_caffe(resize_tensor(to_tensor(resized(style_image, size)), (size, size))).to(device)
    same = Options(size=size, iterations=iterations, scales=1, device=str(device))
    rows = []
    (_, ref_loss), ref_s = _timed(device, lambda: reference_stylize(content, style, iterations))
    rows.append((f"reference {width}x{height} single scale", ref_s, iterations, ref_loss))
    result, eng_s = _timed(device, lambda: run(content_image, style_image, same))
    rows.append((f"engine    {width}x{height} single scale", eng_s, iterations, result.loss))
    tuned = preset("standard" if device.type == "cuda" else "preview", size=size, device=str(device))
    result, pre_s = _timed(device, lambda: run(content_image, style_image, tuned))
    rows.append((f"engine    {width}x{height} preset, {tuned.scales} scales", pre_s, result.iterations, result.loss))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", help="long sides (default: 256 on CPU, 512 1024 on GPU)")
    parser.add_argument("--iterations", type=int, help="iterations (default: 50 on CPU, 500 on GPU)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    on_gpu = device.type == "cuda"
    sizes = args.sizes or ([512, 1024] if on_gpu else [256])
    iterations = args.iterations or (500 if on_gpu else 50)
    name = (
        torch.cuda.get_device_name(device)
        if on_gpu
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; torch {torch.__version__}; {iterations} iterations for the single-scale runs")
    load_vgg19_weights()
    run(swirls(64), swirls(64, seed=1), Options(size=64, iterations=2, scales=1, device=str(device)))  # warm-up
    print(f"{'run':44} {'wall s':>8} {'it/s':>8} {'final loss':>12} {'speed-up':>9} {'loss/ref':>9}")
    for size in sizes:
        rows = bench(size, iterations, device)
        ref_s, ref_loss = rows[0][1], rows[0][3]
        for label, seconds, its, loss in rows:
            speed_up, loss_ratio = ref_s / seconds, loss / ref_loss
            print(f"{label:44} {seconds:8.2f} {its / seconds:8.2f} {loss:12.5g} {speed_up:8.2f}x {loss_ratio:9.4f}")
        if on_gpu:
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
            torch.cuda.reset_peak_memory_stats(device)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
