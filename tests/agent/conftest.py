"""Images for the engine's tests, made here: tests never depend on files outside the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from styletransfer.samples import stained_glass, swirls


def photo_like(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth colourful scene with a few edges: gradients, a disc and a bar."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    image = np.stack([0.3 + 0.5 * x, 0.2 + 0.6 * y, 0.6 - 0.3 * x * y], axis=-1)
    cy, cx = rng.uniform(0.2, 0.5, 2)
    image[(x - cx) ** 2 + (y - cy) ** 2 < 0.03] = (0.85, 0.3, 0.2)
    image[(y > 0.45) & (y < 0.5)] = (0.1, 0.1, 0.15)
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8))


@pytest.fixture
def content() -> Image.Image:
    return photo_like()


@pytest.fixture
def style() -> Image.Image:
    return stained_glass(96, cells=20, seed=1)


@pytest.fixture
def second_style() -> Image.Image:
    return swirls(96, seed=2)


@pytest.fixture
def image_files(tmp_path: Path, content: Image.Image, style: Image.Image) -> tuple[Path, Path]:
    content_path, style_path = tmp_path / "content.png", tmp_path / "style.jpg"
    content.save(content_path)
    style.save(style_path)
    return content_path, style_path
