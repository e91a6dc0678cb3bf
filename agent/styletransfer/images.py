"""Reading, resizing and writing images safely.

Every failure a user can cause (missing file, not an image, truncated data, a decompression
bomb, a format we cannot write) becomes an :class:`ImageError` with a one-line message. Reading
is safeimage's (layers/common), which TRANSFER_STYLE and the preview use too, so an image refused
here is refused before a job starts, in the same words.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import safeimage
import torch
from PIL import Image
from safeimage import MAX_INPUT_PIXELS as MAX_INPUT_PIXELS  # the engine's limit is the service's
from safeimage import ImageError


def open_image(source: str | os.PathLike[str] | BinaryIO, what: str = "image") -> Image.Image:
    """Decode an image fully into RGB (transparency on white), upright by its EXIF orientation; an
    ImageError naming `what` (and the file) when it cannot be used."""
    # "content image photo.jpg ..." for a file; just "content image ..." for bytes in memory
    label = f"{what} {os.fspath(source)}" if isinstance(source, str | os.PathLike) else what
    return safeimage.open_image(source, label)


def fit_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is `long_side`, keeping the aspect ratio."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resized(image: Image.Image, long_side: int) -> Image.Image:
    size = fit_size(*image.size, long_side)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 (1, 3, H, W) in 0..1."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """float (1, 3, H, W) in 0..1 -> PIL RGB, rounding to the nearest 8-bit value."""
    array = tensor.detach().float().clamp(0, 1).squeeze(0).permute(1, 2, 0).mul(255).round()
    return Image.fromarray(array.to(torch.uint8).cpu().numpy(), "RGB")


def resize_tensor(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) to (width, height) = size with antialiased bicubic interpolation."""
    width, height = size
    if tensor.shape[-2:] == (height, width):
        return tensor
    return torch.nn.functional.interpolate(
        tensor, size=(height, width), mode="bicubic", align_corners=False, antialias=True
    )


WRITABLE = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def output_format(path: str | os.PathLike[str]) -> str:
    """The format a result will be written in; an ImageError if `path` cannot take one.

    Checked before any work starts, so a long run never ends in an unwritable path.
    """
    path = Path(path)
    image_format = WRITABLE.get(path.suffix.lower())
    if image_format is None:
        raise ImageError(f"cannot write {path}: its name must end in one of {', '.join(sorted(WRITABLE))}")
    if not path.parent.is_dir():
        raise ImageError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise ImageError(f"cannot write {path}: it is a directory")
    if not os.access(path.parent, os.W_OK):
        raise ImageError(f"cannot write {path}: directory {path.parent} is not writable")
    return image_format


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temporary file, then rename), so a failure never leaves half a file."""
    path = Path(path)
    image_format = output_format(path)
    extra = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
            temporary = Path(handle.name)
            image.save(handle, format=image_format, **extra)
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)  # temporary files are private; the result should not be
        temporary.replace(path)
    except BaseException as error:  # Ctrl-C or a Pillow ValueError must not leave the temporary file
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ImageError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    return path
