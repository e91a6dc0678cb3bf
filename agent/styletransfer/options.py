"""What shapes a result: the options, their bounds, and the named presets.

How a job runs (its device, precision, how each iteration is launched) is not an option: it is a
`device.Plan`, settled once per job from the few requests below.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

MAX_SIZE = 4096  # long side of the output, in pixels; 2048 fits a 24 GiB GPU with room to spare
MIN_SIZE = 64  # below this relu5_1 is a few pixels wide and the style statistics mean little
MAX_ITERATIONS = 10_000
MAX_STYLES = 8
# What a caller may ask of how a job runs (device.resolve_plan settles "auto"); kept here, with no
# PyTorch to import, for the command line's choices.
PRECISIONS = ("auto", "fp32", "bf16")  # of the network
CAPTURES = ("auto", "none", "compile", "cuda_graph")  # how an iteration is launched: see iterations.py
MAX_HISTORY = 1000
# L-BFGS pairs kept. neural-style kept 100; 20 measured faster on an H100 (the history products
# read every pair each iteration) at a final loss within the runs' own spread
# (docs/history/benchmarks-2026-11.md, "Quality trade-offs").
HISTORY = 20


@dataclass(frozen=True)
class Options:
    """Everything that shapes a result. Defaults are the `standard` preset's."""

    size: int = 512  # long side of the output
    iterations: int = 200  # per scale
    scales: int = 3  # coarse-to-fine steps, each sqrt(2) larger, ending at `size`
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    strength: float = 0.5  # 0 = a hint of the style, 1 = as much as possible; 0.5 keeps the weights
    style_scale: float = 1.0  # style image's long side, relative to the output's
    style_blend: tuple[float, ...] = ()  # one weight per style image; empty = equal
    preserve_colors: bool = False  # luminance-only transfer: the content keeps its colours
    init: Literal["content", "noise"] = "content"  # noise: neural-style's, the mean pixel and a trace of noise
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    learning_rate: float = 10.0  # Adam's, in caffe-space pixel units (0..255)
    pooling: Literal["max", "avg"] = "max"
    seed: int = 0
    history: int = HISTORY  # L-BFGS pairs kept

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: object) -> Options:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def effective_style_weight(self) -> float:
        """Style weight after `strength`: log-scaled from 1/10x (0) through 1x (0.5) to 10x (1)."""
        return self.style_weight * 10.0 ** (2.0 * (self.strength - 0.5))

    def scale_sizes(self) -> list[int]:
        """Output long side at each scale, smallest first; never below MIN_SIZE."""
        sizes = [max(MIN_SIZE, round(self.size / math.sqrt(2) ** k)) for k in reversed(range(self.scales))]
        return sorted(set(sizes))


def _problems(o: Options) -> list[str]:
    found = []

    def bounded(name: str, value: float, low: float, high: float) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
            found.append(f"{name} must be between {low:g} and {high:g}, not {value!r}")

    bounded("size", o.size, MIN_SIZE, MAX_SIZE)
    bounded("iterations", o.iterations, 1, MAX_ITERATIONS)
    bounded("scales", o.scales, 1, 8)
    for name in ("content_weight", "style_weight", "tv_weight"):
        bounded(name, getattr(o, name), 0, 1e9)
    bounded("strength", o.strength, 0, 1)
    bounded("style_scale", o.style_scale, 0.1, 4)
    bounded("learning_rate", o.learning_rate, 1e-6, 1e4)
    bounded("seed", o.seed, 0, 2**63 - 1)
    bounded("history", o.history, 1, MAX_HISTORY)
    if not all(isinstance(v, int) for v in (o.size, o.iterations, o.scales, o.seed, o.history)):
        found.append("size, iterations, scales, seed and history must be whole numbers")
    if o.style_blend and (any(not (math.isfinite(w) and w >= 0) for w in o.style_blend) or sum(o.style_blend) <= 0):
        found.append("style blend weights must be non-negative and not all zero")
    for name, allowed in (
        ("init", ("content", "noise")),
        ("optimizer", ("lbfgs", "adam")),
        ("pooling", ("max", "avg")),
    ):
        if getattr(o, name) not in allowed:
            found.append(f"{name} must be one of {', '.join(allowed)}, not {getattr(o, name)!r}")
    return found


PRESETS: dict[str, Options] = {
    # About a minute on a 2-core CPU: 128 -> 181 -> 256 px.
    "preview": Options(size=256, iterations=60, scales=3),
    "standard": Options(),
    "high": Options(size=1024, iterations=300, scales=4),
}


def preset(name: str, **overrides: object) -> Options:
    """A named preset with some fields changed; 'auto' is 'standard' on a GPU and 'preview' on a CPU."""
    if name == "auto":
        from .device import cuda_available

        name = "standard" if cuda_available() else "preview"
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose from auto, {', '.join(PRESETS)}") from None
    return base.replace(**overrides)


__all__ = [
    "CAPTURES",
    "HISTORY",
    "MAX_HISTORY",
    "MAX_SIZE",
    "MAX_STYLES",
    "MIN_SIZE",
    "PRECISIONS",
    "PRESETS",
    "Options",
    "preset",
]
