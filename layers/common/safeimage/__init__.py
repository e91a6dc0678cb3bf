"""Decoding the images users send: one set of checks, one pixel limit and one set of messages for
every part of the service that reads one.

- the engine (`styletransfer.images.open_image`: the GPU worker and the `stylize` CLI);
- TRANSFER_STYLE (`check_image`, through `styleservice.image_check`), which refuses before a job
  starts any image the worker would refuse, so no GPU is paid for a photo that cannot be painted;
- the instant preview (`styleservice.preview`).

It needs only Pillow (numpy only for 16-bit images): the Lambda layer ships it (layers/common), and
the worker's image and the installed package carry it beside the engine.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

# Largest input we decode: about 50 megapixels (a 8688x5792 phone or DSLR photo). Pillow's own
# bomb check (MAX_IMAGE_PIXELS) only warns below twice its limit; we refuse before decoding.
MAX_INPUT_PIXELS = 50_000_000


class ImageError(ValueError):
    """An image that cannot be used, with a one-line message fit to show a user."""


def open_image(
    source: str | os.PathLike[str] | BinaryIO, label: str = "image", *, draft_side: int | None = None
) -> Image.Image:
    """`source` decoded whole into RGB (transparency on white), upright by its EXIF orientation
    (phones rotate that way); an ImageError whose message starts with `label` when it cannot be.

    `draft_side` lets a JPEG decode at 1/2, 1/4 or 1/8 scale while its long side stays at least
    that many pixels.
    """
    with _refused_as(label):
        return to_rgb(_decoded(source, label, draft_side))


def check_image(source: str | os.PathLike[str] | BinaryIO, label: str = "image") -> None:
    """Refuse, as open_image would and in its words, an image that open_image would refuse; cheaply.

    It decodes as open_image does, but JPEGs at 1/8 scale: the decoder still reads every
    coefficient, so a damaged body is found all the same, in a few MB for a 50-megapixel photo.
    (The conversion to RGB is not made: every mode Pillow opens converts.)
    """
    with _refused_as(label):
        _decoded(source, label, draft_side=1)


def _decoded(source: str | os.PathLike[str] | BinaryIO, label: str, draft_side: int | None) -> Image.Image:
    image = Image.open(source)
    width, height = image.size
    if width * height > MAX_INPUT_PIXELS:
        raise ImageError(
            f"{label} is {width}x{height} pixels, more than the {MAX_INPUT_PIXELS // 1_000_000} megapixels accepted"
        )
    if draft_side is not None:  # Pillow keeps each side at least as large as asked: ask in proportion
        longest = max(width, height)
        image.draft(image.mode, (-(-draft_side * width // longest), -(-draft_side * height // longest)))
    image.load()  # decode now so a truncated file fails here, not later
    return ImageOps.exif_transpose(image)


@contextlib.contextmanager
def _refused_as(label: str) -> Iterator[None]:
    """Every way Pillow and the file system fail on an image, as one ImageError starting with `label`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{label} does not exist") from None
    except IsADirectoryError:
        raise ImageError(f"{label} is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{label} cannot be read (permission denied)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image in a format we can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label} is too large to decode safely (decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow reports broken data in these
        raise ImageError(f"{label} is damaged or truncated ({error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on white for images with transparency; plain conversion for every other mode."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np  # only here: TRANSFER_STYLE's check never converts, and needs no numpy

        array = np.asarray(image, dtype=np.float64)
        # I;16 is 16-bit by definition; 32-bit "I" holds 16-bit PNGs on some Pillow versions and
        # 8-bit values elsewhere, so only there does the range decide.
        scale = 65535.0 if image.mode != "I" or array.max() > 255 else 255.0
        image = Image.fromarray((array / scale * 255).round().clip(0, 255).astype(np.uint8))
    return image.convert("RGB")
