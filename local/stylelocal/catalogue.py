"""The style catalogue of the local stack: styles the project draws itself (styletransfer.samples),
so their licence is ours, stored where LIST_STYLES looks for them (styles/<name>.jpg)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from PIL import Image
from styletransfer import samples

SIZE = 512  # px a side: the `standard` preset's size, and styleScale 1 matches a 512 px result
JPEG_QUALITY = 92
STYLES: dict[str, Callable[[int], Image.Image]] = {  # catalogue name (^[a-z0-9][a-z0-9-]*$) -> painter
    "swirls": samples.swirls,
    "stained-glass": samples.stained_glass,
    "mosaic": samples.mosaic,
    "waves": samples.waves,
}


def style_key(name: str) -> str:
    return f"styles/{name}.jpg"  # styleservice.keys.style_key's layout


def jpeg(image: Image.Image) -> bytes:
    encoded = io.BytesIO()
    image.convert("RGB").save(encoded, format="JPEG", quality=JPEG_QUALITY)
    return encoded.getvalue()


def seed_styles(aws: Any, styles: dict[str, Callable[[int], Image.Image]] | None = None) -> list[str]:
    """Writes styles/<name>.jpg (an RGB JPEG, SIZE px) into the images bucket for each catalogue
    style that is not there yet, and returns the names it wrote. A style already in the bucket
    (restored from a snapshot, or replaced by the user) is left as it is."""
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    present = {
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="styles/")
        for item in page.get("Contents", [])
    }
    written = []
    for name, paint in (styles if styles is not None else STYLES).items():
        key = style_key(name)
        if key in present:
            continue
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=jpeg(paint(SIZE)),
            ContentType="image/jpeg",
            CacheControl="public, max-age=86400",
        )
        written.append(name)
    return written
