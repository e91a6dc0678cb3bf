"""The worker's image checks, made before a job starts: a photo or a style image that the worker
would refuse is refused here, so no job is recorded and no GPU is paid for.

Both use safeimage (layers/common/safeimage): the same limit, the same checks, the same one-line
reasons.
"""

from __future__ import annotations

import io

import safeimage

from .protocol import ProtocolError


def check_image(data: bytes, what: str) -> None:
    """A ProtocolError naming `what` ("the content image ...") if the worker would refuse `data`."""
    try:
        safeimage.check_image(io.BytesIO(data), f"the {what}")
    except safeimage.ImageError as refused:
        raise ProtocolError(str(refused)) from None
