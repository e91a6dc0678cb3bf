"""Gatys et al. neural style transfer on the original VGG-19 weights."""

from .device import Plan, resolve_plan
from .engine import Progress, Result, run, stylize
from .images import ImageError, open_image, save_image
from .options import PRESETS, Options, preset

__all__ = [
    "PRESETS",
    "ImageError",
    "Options",
    "Plan",
    "Progress",
    "Result",
    "open_image",
    "preset",
    "resolve_plan",
    "run",
    "save_image",
    "stylize",
]
