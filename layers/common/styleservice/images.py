"""The worker's image checks, made before a job starts: a photo or a style image that the worker
would refuse is refused here, so no job is recorded and no GPU is paid for.

The worker (agent/styletransfer/images.py `open_image`) refuses an image that Pillow cannot
identify, one of more than MAX_INPUT_PIXELS, and one whose data is damaged or truncated.
`check_image` makes the same three checks with the same one-line reasons. It decodes the whole
image, which is what finds a broken body behind a valid header; JPEGs are decoded at 1/8 scale
(Pillow's draft mode still reads every coefficient), so a 50-megapixel photo costs a few MB.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from .protocol import ProtocolError

# The worker's limit (styletransfer.images.MAX_INPUT_PIXELS; a test checks that they agree).
MAX_INPUT_PIXELS = 50_000_000


def check_image(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) of an image the worker will decode; ProtocolError naming `what` otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_INPUT_PIXELS:
                    raise ProtocolError(
                        f"the {what} is {width}x{height} pixels, more than the "
                        f"{MAX_INPUT_PIXELS // 1_000_000} megapixels accepted"
                    )
                if image.format == "JPEG":
                    image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
    except ProtocolError:
        raise
    except UnidentifiedImageError:
        raise ProtocolError(f"the {what} is not an image in a format we can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ProtocolError(f"the {what} is too large to decode safely (decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as broken:  # Pillow reports broken data in these
        raise ProtocolError(f"the {what} is damaged or truncated ({broken})") from None
    return width, height
