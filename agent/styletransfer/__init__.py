"""Gatys et al. neural style transfer on the original VGG-19 weights."""

from .engine import Progress, Result, run, stylize
from .images import ImageError, open_image, save_image
from .options import PRESETS, Options, preset

__all__ = [
    "PRESETS",
    "ImageError",
    "Options",
    "Progress",
    "Result",
    "open_image",
    "preset",
    "run",
    "save_image",
    "stylize",
]
