"""Reading a client's upload (uploads/<32 hex>.<ext>, from REQUEST_UPLOAD's presigned POST) as
TRANSFER_STYLE and PREVIEW_STYLES take it: it must exist, be within the upload limit and be a
JPEG, PNG or WebP by its bytes; the whole file read is exactly the version whose start was
checked (its ETag), since the presigned POST stays valid and could replace it meanwhile."""

from __future__ import annotations

from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from .protocol import ProtocolError, sniff
from .settings import settings
from .storage import object_start


class Upload(NamedTuple):
    content_type: str  # what the bytes are, whatever the key's extension says
    etag: str
    data: bytes


def read_upload(s3: Any, key: str, field: str) -> Upload:
    start = object_start(s3, key)
    if start is None:
        raise ProtocolError(
            f"{field}: there is no upload at {key}; POST the file with the url and fields from REQUEST_UPLOAD "
            "first (uploads expire after a day)"
        )
    if start.size > settings.max_upload_bytes:
        raise ProtocolError(f"{field}: the upload is {start.size} bytes, over the limit of {settings.max_upload_bytes}")
    content_type = sniff(start.data)
    if content_type is None:
        raise ProtocolError(f"{field}: the upload at {key} is not a JPEG, PNG or WebP file")
    try:
        whole = s3.get_object(Bucket=settings.images_bucket, Key=key, IfMatch=start.etag)["Body"].read()
    except ClientError as failure:
        if failure.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            raise ProtocolError(f"{field}: the upload changed while it was checked; send the request again") from None
        raise
    return Upload(content_type, start.etag, whole)
