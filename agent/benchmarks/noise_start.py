"""Where a run from noise ends: the engine's noise start beside jcjohnson/neural-style's.

    python agent/benchmarks/noise_start.py [--size 256] [--iterations 100] [--device cpu]
                                           [--photo chelsea] [--painting starry-night] [--seed 0]

On one photo/painting pair (a scikit-image photo, a painting of the catalogue), one scale,
`--iterations` L-BFGS iterations from noise:

- the plain reference (reference.py: fp32, torch's L-BFGS, history 100) from neural-style's
  `-init random`: randn * 0.001 in caffe space, the mean pixel and a trace of noise;
- the engine's `init="noise"`, with its plan's defaults, at its default L-BFGS history and at 100;
- the engine from uniform noise over the whole pixel range (given as its start image): the noise
  start the engine had before it took neural-style's.

Each is scored by one objective (`reference.Scorer`: the reference's fp32 objective on the final
8-bit image) and by that objective's total-variation term alone, which says how rough it is.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from styletransfer import Options, open_image, resolve_plan, run
from styletransfer.images import fit_size, to_image
from styletransfer.reference import Scorer, fp32, reference_stylize
from styletransfer.vgg import from_caffe

ROOT = Path(__file__).resolve().parents[2]
NEURAL_STYLE_HISTORY = 100  # the L-BFGS history of jcjohnson/neural-style and of the reference
NEURAL_STYLE_NOISE = 0.001  # neural-style's -init random: torch.randn(...):mul(0.001), in caffe space


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    score: float  # the reference's objective on the 8-bit result
    roughness: float  # its total-variation term alone


def neural_style_noise(shape: torch.Size, seed: int) -> torch.Tensor:
    """neural-style's random start, written here apart from the engine's: in caffe space, so the
    mean pixel plus a trace of noise."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * NEURAL_STYLE_NOISE


def uniform_noise(size: tuple[int, int], seed: int) -> Image.Image:
    """Noise over the whole pixel range, as an 8-bit picture of `size` (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def measured(label: str, scorer: Scorer, work) -> Row:
    started = time.perf_counter()
    image = work()
    seconds = time.perf_counter() - started
    row = Row(label, seconds, scorer.score(image), scorer.roughness(image))
    print(f"{row.label:58} {row.seconds:8.1f} {row.score:12.4g} {row.roughness:11.4g}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="long side in px (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=100, help="one scale (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--photo", default="chelsea", help="a scikit-image photo (default: %(default)s)")
    parser.add_argument("--painting", default="starry-night", help="in catalogue/ (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from skimage import data  # public-domain photos (the dev extra installs scikit-image)

    content = Image.fromarray(getattr(data, args.photo)()).convert("RGB")
    style = open_image(ROOT / "catalogue" / f"{args.painting}.jpg", "style image")
    plan = resolve_plan(args.device)
    scorer = Scorer(content, style, args.size, device=plan.device)
    width, height = fit_size(*content.size, args.size)
    machine = platform.processor() or platform.machine()
    print(
        f"# {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads; {args.photo} x {args.painting}, "
        f"{width}x{height}, 1 scale x {args.iterations} iterations from noise; the engine's plan: "
        f"{plan.device}, {plan.precision}, capture {plan.capture}"
    )
    print(f"{'run':58} {'wall s':>8} {'score':>12} {'TV term':>11}")
    single = Options(size=args.size, iterations=args.iterations, scales=1, init="noise", seed=args.seed)

    def reference() -> Image.Image:
        start = neural_style_noise(scorer.content.shape, args.seed).to(plan.device)
        with fp32():  # as written: no TF32
            image, _ = reference_stylize(scorer.content, scorer.style, args.iterations, start=start)
        return to_image(from_caffe(image))

    def engine(options: Options, init_image: Image.Image | None = None):
        return lambda: run(content, style, options, init_image=init_image, plan=plan).image

    history = single.history
    measured("reference, neural-style's noise start, history 100", scorer, reference)
    measured(f"engine, its noise start, history {history}", scorer, engine(single))
    measured(
        f"engine, its noise start, history {NEURAL_STYLE_HISTORY}",
        scorer,
        engine(single.replace(history=NEURAL_STYLE_HISTORY)),
    )
    uniform = uniform_noise((width, height), args.seed)
    measured(f"engine, uniform noise over 0..255, history {history}", scorer, engine(single, uniform))
    measured(
        f"engine, uniform noise over 0..255, history {NEURAL_STYLE_HISTORY}",
        scorer,
        engine(single.replace(history=NEURAL_STYLE_HISTORY), uniform),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
