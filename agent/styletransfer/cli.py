"""`stylize CONTENT STYLE [STYLE ...] -o OUT`: the engine from the command line.

Every mistake a user can make ends in one line on stderr and a non-zero exit status: 2 for a bad
command line or input, 1 when the run itself fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .options import CAPTURES, MAX_HISTORY, MAX_ITERATIONS, MAX_SIZE, MAX_STYLES, MIN_SIZE, PRECISIONS, PRESETS


def _one_line(message: str) -> str:
    """Control characters escaped (a newline in a file name or value), so an error stays one line."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _bounded(kind: type, low: float, high: float):
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not (low <= value <= high):  # also rejects nan
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="stylize",
        description="Repaint a photo in the style of one or more paintings (Gatys et al., VGG-19).",
        epilog=_presets_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("content", help="the photo to repaint")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s); several are blended")
    p.add_argument("-o", "--output", required=True, help="where to write the result (.jpg, .png, .webp, ...)")
    p.add_argument(
        "--preset",
        choices=("auto", *PRESETS),
        default="auto",
        help="quality/speed (default: auto = standard on a GPU, preview on a CPU)",
    )
    g = p.add_argument_group("overrides of the preset (unset: the preset's value)")
    g.add_argument("--size", type=_bounded(int, MIN_SIZE, MAX_SIZE), help="long side of the result in pixels")
    g.add_argument("--iterations", type=_bounded(int, 1, MAX_ITERATIONS), help="optimiser iterations per scale")
    g.add_argument("--scales", type=_bounded(int, 1, 8), help="coarse-to-fine steps (1: single scale)")
    g.add_argument("--strength", type=_bounded(float, 0, 1), help="style strength, 0 (subtle) .. 1 (intense)")
    g.add_argument("--content-weight", type=_bounded(float, 0, 1e9))
    g.add_argument("--style-weight", type=_bounded(float, 0, 1e9))
    g.add_argument("--tv-weight", type=_bounded(float, 0, 1e9), help="smoothness (total variation) weight")
    g.add_argument("--style-scale", type=_bounded(float, 0.1, 4), help="style image size relative to the result")
    g.add_argument(
        "--style-blend", type=_bounded(float, 0, 1e6), nargs="+", metavar="W", help="one weight per style image"
    )
    g.add_argument(
        "--preserve-colors",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the photo's colours: transfer the style to luminance only",
    )
    g.add_argument("--init", choices=("content", "noise"), help="start from the photo or from noise")
    g.add_argument("--optimizer", choices=("lbfgs", "adam"))
    g.add_argument("--learning-rate", type=_bounded(float, 1e-6, 1e4), help="Adam's step size")
    g.add_argument("--pooling", choices=("max", "avg"))
    g.add_argument("--seed", type=_bounded(int, 0, 2**63 - 1))
    g.add_argument("--history", type=_bounded(int, 1, MAX_HISTORY), help="L-BFGS pairs kept (default 20)")
    h = p.add_argument_group("how it runs (unset: auto, the device's fastest measured way)")
    h.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    h.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="precision of the network (auto: bf16 on CUDA and on a CPU with native bf16, else fp32)",
    )
    h.add_argument(
        "--capture",
        choices=CAPTURES,
        help="launch each iteration eagerly, compiled (torch.compile) or as one CUDA graph "
        "(auto: a CUDA graph on CUDA, eagerly on a CPU)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _presets_help() -> str:
    lines = ["presets (long side, scales x iterations per scale):"]
    for name, o in PRESETS.items():
        lines.append(f"  {name:9} {o.size:5} px, {o.scales} x {o.iterations}")
    o = PRESETS["standard"]
    lines.append(
        f"all presets: strength {o.strength}, content/style/tv weights {o.content_weight:g}/{o.style_weight:g}/"
        f"{o.tv_weight:g}, {o.optimizer}, init from {o.init}, {o.pooling} pooling, seed {o.seed}"
    )
    return "\n".join(lines)


_OVERRIDES = (
    "size", "iterations", "scales", "strength", "content_weight", "style_weight", "tv_weight", "style_scale",
    "preserve_colors", "init", "optimizer", "learning_rate", "pooling", "seed", "history",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("stylize: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("STYLIZE_DEBUG"):
            raise
        return _report(error)


def _run(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and argument errors answer without loading PyTorch.
    import torch

    from .device import resolve_plan
    from .engine import run
    from .images import open_image, output_format, save_image
    from .options import preset

    # Also checked by the engine; here so that a mistake fails before up to 8 photos are decoded.
    if len(args.styles) > MAX_STYLES:
        raise ValueError(f"at most {MAX_STYLES} style images, not {len(args.styles)}")
    if args.style_blend is not None and len(args.style_blend) != len(args.styles):
        raise ValueError(f"--style-blend has {len(args.style_blend)} weights for {len(args.styles)} style images")
    output_format(args.output)
    overrides = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    if args.style_blend is not None:
        overrides["style_blend"] = tuple(args.style_blend)
    options = preset(args.preset, **overrides)
    plan = resolve_plan(args.device or "auto", args.precision or "auto", args.capture or "auto")
    content = open_image(args.content, "content image")
    styles = [open_image(path, "style image") for path in args.styles]

    bar = None if args.quiet else _ProgressBar()
    try:
        result = run(content, styles, options, bar.update if bar else None, plan=plan)
    except torch.OutOfMemoryError:
        raise MemoryError(f"out of memory at --size {options.size}; try a smaller size or --precision bf16") from None
    finally:
        if bar:
            bar.close()
    save_image(result.image, args.output)
    if not args.quiet:
        width, height = result.image.size
        print(
            f"wrote {args.output} ({width}x{height}, {result.seconds:.1f} s, loss {result.loss:.4g})", file=sys.stderr
        )
    return 0


def _report(error: Exception) -> int:
    from .images import ImageError

    if isinstance(error, ImageError | ValueError):
        print(f"stylize: error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    if isinstance(error, MemoryError):
        print(f"stylize: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    print(f"stylize: error: {type(error).__name__}: {message} (set STYLIZE_DEBUG=1 for details)", file=sys.stderr)
    return 1


class _ProgressBar:
    """A tqdm bar fed by the engine's progress callback."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar: tqdm | None = None

    def update(self, progress) -> None:
        if self._bar is None:
            self._bar = self._tqdm(total=progress.total, unit="it", file=sys.stderr, dynamic_ncols=True)
        self._bar.set_description(f"scale {progress.scale}/{progress.scales} {progress.size[0]}x{progress.size[1]}")
        self._bar.set_postfix(loss=f"{progress.loss:.4g}", refresh=False)
        self._bar.update(progress.iteration - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


if __name__ == "__main__":
    sys.exit(main())
