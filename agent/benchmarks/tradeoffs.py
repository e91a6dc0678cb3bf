"""What the cheap settings cost in quality: the L-BFGS history length, the precision of the
Gram matrices and of the style gradient's product.

    python agent/benchmarks/tradeoffs.py [--size 128] [--iterations 100] [--pairs 3]
                                         [--variants all] [--single 0] [--device cpu]
                                         [--precision fp32]

For several content/style pairs (scikit-image's public-domain photos with the project's drawn
styles), each variant runs the standard preset's shape (3 scales, coarse to fine, from the photo)
with `--iterations` per scale; with `--single N` also N iterations at one scale from noise. On a
CPU the runs are eager, fp32 unless `--precision bf16` (the network in bf16, as on a GPU); on CUDA
they use the CUDA defaults (bf16 network, CUDA graph, TF32 Grams) and the Gram rounding is not
emulated. "bf16_style_gradient" (losses.LOW_PRECISION_STYLE_GRADIENT) changes only bf16 runs. Every
result is scored by one objective, the plain fp32 reference's, on the final full-size 8-bit image
(what a user gets), and compared with the baseline's (history 100, fp32 Grams) on the same pair: a
positive change is a higher (worse) loss.

On a CPU tensor cores are emulated: for "tf32 Grams" and "bf16 Grams" the features are rounded to
TF32's 10 (bf16's 7) stored mantissa bits before an fp32 product with fp32 sums, which is what
those units compute. (On the GPU's default bf16 path the features are bf16 already, so TF32 Grams
there are exact: this measures what TF32 Grams cost the fp32 path.)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from unittest import mock

import torch
from PIL import Image
from styletransfer import Options, resolve_plan, run
from styletransfer import losses as losses_module
from styletransfer.reference import Scorer
from styletransfer.samples import mosaic, stained_glass, swirls, waves


@dataclass(frozen=True)
class Variant:
    key: str
    history: int
    gram_bits: int | None  # stored mantissa bits of the Gram's inputs; None: fp32 (23)
    low_precision_style_gradient: bool = False  # on bf16 features: the style gradient's product in bf16


VARIANTS = (
    Variant("baseline", 100, None),
    Variant("history50", 50, None),
    Variant("history20", 20, None),
    Variant("history10", 10, None),
    Variant("tf32_grams", 100, 10),
    Variant("bf16_grams", 100, 7),
    Variant("history20_tf32_grams", 20, 10),
    Variant("bf16_style_gradient", 100, None, low_precision_style_gradient=True),
)


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """fp32 values rounded to nearest (ties to even) with `bits` stored mantissa bits."""
    drop = 23 - bits
    i = x.contiguous().view(torch.int32)
    bias = ((i >> drop) & 1) + (1 << (drop - 1)) - 1
    return ((i + bias) & ~((1 << drop) - 1)).view(torch.float32)


@contextlib.contextmanager
def gram_inputs_rounded(bits: int | None) -> Iterator[None]:
    """The objective's Gram matrices from features rounded as tensor cores read them (the gradient
    passes straight through the rounding). The objective's style terms go through
    `losses.style_loss`, which `total_loss` looks up at each call: that is what is replaced."""
    if bits is None:
        yield
        return
    exact = losses_module.style_loss

    def style_loss(features: torch.Tensor, target_gram: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        f = features.float()
        return exact(f + (round_mantissa(f.detach(), bits) - f).detach(), target_gram, weight)

    with mock.patch.object(losses_module, "style_loss", style_loss):
        yield


def pairs(count: int) -> list[tuple[str, Image.Image, Image.Image]]:
    from skimage import data

    photos = [("chelsea", data.chelsea()), ("astronaut", data.astronaut()), ("coffee", data.coffee())]
    photos += [("rocket", data.rocket())]
    styles = [("swirls", swirls()), ("stained_glass", stained_glass()), ("waves", waves()), ("mosaic", mosaic())]
    chosen = []
    for (photo_name, photo), (style_name, style) in list(zip(photos, styles, strict=True))[:count]:
        chosen.append((f"{photo_name}+{style_name}", Image.fromarray(photo), style))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=100, help="per scale, 3 scales")
    parser.add_argument("--single", type=int, default=0, help="also a single-scale run from noise this long")
    parser.add_argument("--pairs", type=int, default=3, choices=range(1, 5))
    parser.add_argument("--variants", nargs="+", default=["all"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of the network, on a CPU")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    by_key = {variant.key: variant for variant in VARIANTS}
    keys = list(by_key) if args.variants == ["all"] else args.variants
    if unknown := [key for key in keys if key not in by_key]:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}: choose from all, {', '.join(by_key)}")
    variants = [by_key["baseline"]] + [by_key[key] for key in keys if key != "baseline"]
    if on_gpu:  # real tensor cores there: their rounding is not emulated
        variants = [variant for variant in variants if variant.gram_bits is None]
    kinds = [("preset", Options(size=args.size, scales=3, iterations=args.iterations))]
    if args.single:
        kinds.append(("single", Options(size=args.size, scales=1, iterations=args.single, init="noise")))
    if on_gpu:
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}; {args.size} px; the CUDA defaults")
        plan = resolve_plan(str(device))
    else:
        threads = torch.get_num_threads()
        print(f"CPU, {threads} threads, torch {torch.__version__}; {args.size} px; {args.precision}, eager")
        plan = resolve_plan("cpu", args.precision, "none")
    changes: dict[tuple[str, str], list[float]] = {}
    for name, content, style in pairs(args.pairs):
        scorer = Scorer(content, style, args.size, device=device)
        for kind, base in kinds:
            baseline = None
            for variant in variants:
                options = base.replace(history=variant.history)
                started = time.perf_counter()
                # the style gradient's precision as the variant asks, whatever the default
                style_gradient = variant.low_precision_style_gradient
                with (
                    gram_inputs_rounded(variant.gram_bits),
                    mock.patch.object(losses_module, "LOW_PRECISION_STYLE_GRADIENT", style_gradient),
                ):
                    result = run(content, style, options, plan=plan)  # its PIL image was read back: the GPU is done
                score = scorer.score(result.image)
                baseline = baseline or score
                change = score / baseline - 1
                changes.setdefault((kind, variant.key), []).append(change)
                seconds = time.perf_counter() - started
                print(f"{name:24} {kind:6} {variant.key:22} score {score:11.5g} {change:+7.2%} ({seconds:5.1f} s)")
                sys.stdout.flush()
    against = "the baseline (history 100, fp32 Grams and style gradient)"
    print(f"\nchange of the final loss against {against}, {args.pairs} pairs")
    print(f"{'run':8} {'variant':22} {'mean':>8} {'worst':>8} {'best':>8}")
    for (kind, key), values in changes.items():
        if key != "baseline":
            print(f"{kind:8} {key:22} {statistics.mean(values):+8.2%} {max(values):+8.2%} {min(values):+8.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
