"""The images bucket as the functions see it: the S3 client, what a client-named object holds (its
first bytes, without downloading it), public URLs and presigned GETs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .settings import settings

# Long enough for every magic number that protocol.sniff reads (WebP's is 12 bytes).
SNIFF_BYTES = 32


# SigV4 explicitly: presigned URLs and POST policies signed with SigV2 are refused by buckets
# created since 2020, and only SigV4 honours the lifetimes this service asks for.
# The bucket's regional endpoint (https://<bucket>.s3.<region>.amazonaws.com): botocore's default
# for presigned URLs is the global one (<bucket>.s3.amazonaws.com), which S3 refuses in regions
# launched after March 2019 and answers with a redirect for new buckets elsewhere, a redirect that
# a browser's POST or an <img> does not follow. An endpoint override (AWS_ENDPOINT_URL: moto) still
# wins, with path-style URLs.
S3_CONFIG = Config(
    signature_version="s3v4", s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
)


def s3_client() -> Any:
    return boto3.client("s3", config=S3_CONFIG)


@dataclass(frozen=True)
class ObjectStart:
    data: bytes  # the first bytes (fewer for a small object, none for an empty one)
    size: int  # the whole object's size in bytes
    etag: str = ""  # to copy exactly the object that was checked (CopySourceIfMatch)


def object_start(s3: Any, key: str, count: int = SNIFF_BYTES, bucket: str | None = None) -> ObjectStart | None:
    """The first `count` bytes and the size of an object, or None if there is no such object.

    One ranged GET answers both questions; HEAD alone cannot say what the bytes are."""
    try:
        answer = s3.get_object(Bucket=bucket or settings.images_bucket, Key=key, Range=f"bytes=0-{count - 1}")
    except ClientError as failure:
        code = failure.response.get("Error", {}).get("Code", "")
        # S3 answers 403, not 404, for a missing key when the caller may not list the bucket:
        # either way the client named nothing that this function can use.
        if code in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403"):
            return None
        if code == "InvalidRange":  # S3 cannot serve bytes 0..n of an empty object
            return ObjectStart(b"", 0)
        raise
    data = answer["Body"].read()
    total = str(answer.get("ContentRange", "")).rpartition("/")[2]  # "bytes 0-31/12345"
    size = int(total) if total.isdigit() else int(answer.get("ContentLength", len(data)))
    return ObjectStart(data, size, str(answer.get("ETag", "")))


def public_url(key: str) -> str:
    """The CloudFront URL of a public object (styles/, public/)."""
    return f"{settings.public_base_url}/{key}"


def presigned_get(s3: Any, key: str, bucket: str | None = None) -> str:
    """A time-limited GET of a private object, valid for PRESIGNED_URL_SECONDS."""
    return s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket or settings.images_bucket, "Key": key},
        ExpiresIn=settings.presigned_url_seconds,
    )


def job_image_url(s3: Any, key: str, private: bool) -> str:
    """How one of a job's images (its preview, its result) is handed out: a private job's only as
    a short-lived presigned GET, never its public URL."""
    return presigned_get(s3, key) if private else public_url(key)
