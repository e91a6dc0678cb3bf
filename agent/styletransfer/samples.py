"""Sample images made by the project (so their licence is ours), for the demo and the tests.

`python -m styletransfer.samples DIR` writes two style images and, when scikit-image is
installed, two of its public-domain photos to DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

# Night-sky blues and lamp yellows: a palette in the spirit of Post-Impressionist skies.
NIGHT = np.array([[10, 22, 60], [24, 58, 130], [60, 110, 180], [140, 175, 200], [235, 205, 90], [250, 235, 160]])
GLASS = np.array([[180, 30, 40], [30, 90, 170], [240, 190, 40], [40, 140, 70], [120, 50, 140], [230, 120, 30]])
# Terracotta, ochre, slate and cream: the stones of a Roman floor.
TESSERAE = np.array([[170, 70, 40], [205, 150, 70], [60, 75, 90], [235, 225, 200], [120, 40, 35], [90, 120, 80]])
# Prussian blue to foam white: a woodblock print's sea.
SEA = np.array([[12, 30, 70], [20, 60, 120], [60, 120, 170], [170, 205, 220], [245, 245, 235]])


def _palette(values: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map values in 0..1 through a piecewise-linear palette."""
    stops = np.linspace(0, 1, len(palette))
    return np.stack([np.interp(values, stops, palette[:, c]) for c in range(3)], axis=-1)


def swirls(size: int = 512, seed: int = 0) -> Image.Image:
    """Marbled swirls with brush-like streaks: domain-warped waves through a night palette."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    warp_x, warp_y = x.copy(), y.copy()
    for _ in range(4):  # each pass bends the coordinates along waves of the previous pass
        fx, fy, px, py = rng.uniform(1, 2.5), rng.uniform(1, 2.5), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
        warp_x, warp_y = (
            warp_x + 0.18 * np.sin(fy * 2 * np.pi * warp_y + py),
            warp_y + 0.18 * np.sin(fx * 2 * np.pi * warp_x + px),
        )
    field = 0.5 + 0.5 * np.sin(6 * np.pi * warp_x + 3 * np.sin(3 * np.pi * warp_y))
    streaks = 0.5 + 0.5 * np.sin(60 * np.pi * (warp_x - 0.5 * warp_y))  # fine strokes along the flow
    values = np.clip(0.75 * field + 0.25 * streaks + rng.normal(0, 0.03, field.shape), 0, 1)
    return Image.fromarray(_palette(values, NIGHT).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def stained_glass(size: int = 512, cells: int = 60, seed: int = 0) -> Image.Image:
    """Voronoi cells in bold colours, leaded with dark borders."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (cells, 2))
    colours = GLASS[rng.integers(0, len(GLASS), cells)] * rng.uniform(0.75, 1.1, (cells, 1))
    y, x = np.mgrid[0:size, 0:size]
    distance = (x[..., None] - centres[:, 0]) ** 2 + (y[..., None] - centres[:, 1]) ** 2
    nearest = np.sort(distance, axis=-1)
    owner = distance.argmin(axis=-1)
    edge = np.sqrt(nearest[..., 1]) - np.sqrt(nearest[..., 0]) < 3.0  # close to a second centre
    image = colours[owner]
    image[edge] = (25, 20, 20)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def mosaic(size: int = 512, tile: int = 16, seed: int = 0) -> Image.Image:
    """Square tesserae set along concentric rings, each stone a little tilted in colour, with
    light grout between them."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] + rng.uniform(-1.5, 1.5, (2, size, size))  # hand-laid, not machined
    rows, cols = y // tile, x // tile
    ring = np.hypot(rows - rows.max() / 2, cols - cols.max() / 2)
    pattern = (np.floor(ring / 2.5) + (rows.astype(int) * 7 + cols.astype(int) * 3) % 5 // 4) % len(TESSERAE)
    tint = rng.uniform(0.82, 1.12, (size // tile + 2, size // tile + 2, 1))  # each stone a shade of its own
    stones = TESSERAE[pattern.astype(int)] * tint[rows.astype(int), cols.astype(int)]
    grout = (y % tile < 2) | (x % tile < 2)
    stones[grout] = (215, 205, 185)
    return Image.fromarray(np.clip(stones, 0, 255).astype(np.uint8))


def waves(size: int = 512, seed: int = 0) -> Image.Image:
    """Bold bands of sea with crests of foam, bent by long swells with shorter chop on top."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    height = np.zeros_like(x)
    for octave in range(1, 5):  # long swells, then ever shorter chop on top
        phase, tilt = rng.uniform(0, 2 * np.pi), rng.uniform(-0.6, 0.6)
        height += np.sin(2 * np.pi * octave * (1.5 * x + tilt * y) + phase) / octave
    bands = (y * 9 + 0.35 * height) % 1.0  # each band a wave; its position bent by the swell
    values = np.where(bands > 0.86, 1.0, bands / 0.86 * 0.75)  # the top of each band breaks into foam
    values = np.clip(values + rng.normal(0, 0.02, values.shape), 0, 1)
    return Image.fromarray(_palette(values, SEA).astype(np.uint8)).filter(ImageFilter.SMOOTH_MORE)


def photos() -> dict[str, Image.Image]:
    """Public-domain photos shipped inside scikit-image, if it is installed."""
    try:
        from skimage import data
    except ImportError:
        return {}
    return {"chelsea": Image.fromarray(data.chelsea()), "astronaut": Image.fromarray(data.astronaut())}


def benchmark_pair() -> tuple[Image.Image, Image.Image]:
    """The benchmarks' fixed content/style pair: scikit-image's cat photo (the project's swirls
    when scikit-image is missing) and the swirls style."""
    return photos().get("chelsea") or swirls(seed=7), swirls()


def write_samples(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    images = {"swirls": swirls(), "stained_glass": stained_glass(), **photos()}
    paths = []
    for name, image in images.items():
        path = directory / f"{name}.png"
        image.save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "samples")):
        print(written)
