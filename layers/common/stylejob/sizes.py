"""The sizes the service offers on each kind of worker device, and how long a painting takes.

The presets' shapes are the engine's (styletransfer.options.PRESETS: a test holds the two
together); they are repeated here because the functions that offer sizes and estimate times run
without PyTorch. A painting's work is its megapixel-iterations: over the preset's scales (each
√2 smaller than the next, ending at the result's size), the pixels of the photo at that scale
times the iterations. A worker measures its seconds per megapixel-iteration on every job
(workerpool's "#pace" item), so an estimate is that pace times the work, plus a worker's start
when none is up.

    offers("cuda")                       # [Offer(size=512, preset="standard", ...), ...]
    work(offer, 4032, 3024)              # megapixel-iterations of that photo at that size
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Device = Literal["cuda", "cpu"]
DEVICES: tuple[Device, ...] = ("cuda", "cpu")
MIN_SCALE_SIDE = 64  # the engine's MIN_SIZE: no scale is smaller


@dataclass(frozen=True)
class Shape:
    """A preset's shape: its result's long side, its scales and the iterations at each."""

    size: int
    scales: int
    iterations: int


PRESET_SHAPES: dict[str, Shape] = {
    "preview": Shape(size=256, scales=3, iterations=60),
    "standard": Shape(size=512, scales=3, iterations=200),
    "high": Shape(size=1024, scales=4, iterations=300),
}
# The preset that suits a device ("auto"): the worker resolves "auto" the same way.
DEVICE_PRESET: dict[Device, str] = {"cuda": "standard", "cpu": "preview"}
# The sizes a device paints well, and the largest of them that still comes back quickly: on a GPU
# 2048 px takes some 15 s (docs/benchmarks.md), 1024 px a few; on a 2-core CPU 256 px takes 12 to
# 13 s and 512 px four times that.
SIZES: dict[Device, tuple[int, ...]] = {"cuda": (512, 1024, 2048), "cpu": (256, 512)}
DEFAULT_SIZE: dict[Device, int] = {"cuda": 1024, "cpu": 256}


@dataclass(frozen=True)
class Offer:
    """One size the page may ask for: TRANSFER_STYLE's options.preset and options.size, and the
    scales' long sides and iterations that the page needs to estimate a photo's time."""

    size: int
    preset: str
    iterations: int
    scales: tuple[int, ...]  # long side of each scale, smallest first

    def message(self) -> dict[str, object]:
        return {"size": self.size, "preset": self.preset, "iterations": self.iterations, "scales": list(self.scales)}


def scale_sides(size: int, scales: int) -> list[int]:
    """Long side at each scale, smallest first (styletransfer.Options.scale_sizes)."""
    sides = [max(MIN_SCALE_SIDE, round(size / math.sqrt(2) ** k)) for k in reversed(range(scales))]
    return sorted(set(sides))


def offer(size: int, preset: str) -> Offer:
    shape = PRESET_SHAPES[preset]
    return Offer(size, preset, shape.iterations, tuple(scale_sides(size, shape.scales)))


def offers(device: Device) -> list[Offer]:
    """The sizes offered on `device`, smallest first, each with the device's preset."""
    return [offer(size, DEVICE_PRESET[device]) for size in SIZES[device]]


def fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The photo's size at a scale of `long_side` px (styletransfer.images.fit_size)."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def work(chosen: Offer, width: int, height: int) -> float:
    """A photo's megapixel-iterations at the offer's size: what the pace multiplies."""
    return sum(w * h for w, h in (fit(width, height, side) for side in chosen.scales)) * chosen.iterations / 1e6


def estimate_seconds(
    chosen: Offer, width: int, height: int, seconds_per_megapixel_iteration: float, start_seconds: float = 0.0
) -> float:
    """The painting's time from a measured pace, plus a worker's start when none is up."""
    return work(chosen, width, height) * seconds_per_megapixel_iteration + start_seconds
