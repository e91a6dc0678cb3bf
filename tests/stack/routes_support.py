"""What the route functions' tests share: the images their event files carry (and a PNG that lies
about its size), the objects those files name (seeded into moto), reading a route's answer, and
the check that a refused request started nothing."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from typing import Any

import pytest
from PIL import Image
from styleservice.jobs import Jobs

from .local_aws import EVENTS, LocalAws, event

# The 8x8 images inline in events/*/ (made once with Pillow).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAGUlEQVR42mNkYGhQYGDARCwMCgxYweCUAABobwJednxjlwAAAABJRU5ErkJggg=="
)
WEBP = base64.b64decode(
    "UklGRkQAAABXRUJQVlA4IDgAAADQAQCdASoIAAgAAsBMJbACdAD0MaxAAAD+8ad5vDCBK46si+GWLKzuoS7Rv/N9T+hHeP9O5VwAAA=="
)


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header says width x height (its CRC fixed, so only the size is wrong)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def jpeg() -> bytes:
    """The JPEG inline in transfer_style/private_jpeg.json."""
    image = body("transfer_style/private_jpeg.json")["image"]
    return base64.b64decode(image.split(",", 1)[1])


# Objects that the transfer_style event files name.
STYLES = ("starry-night", "the-scream")
UPLOAD_PNG = "uploads/5f2b9c0e7d3a4b1c8e6f0a2d4c7b9e13.png"  # a real PNG
UPLOAD_STYLE = "uploads/c0ffee00c0ffee00c0ffee00c0ffee00.jpg"  # a real JPEG
UPLOAD_TEXT = "uploads/0123456789abcdef0123456789abcdef.png"  # text that claims to be a PNG
UPLOAD_EMPTY = "uploads/00000000000000000000000000000000.webp"  # zero bytes
UPLOAD_MISSING = "uploads/deadbeefdeadbeefdeadbeefdeadbeef.png"  # named, never uploaded

CONNECTION_ID = "Lx8cKfQ2oAMCJfA="  # the connectionId of every event file


def bucket(aws: LocalAws) -> str:
    return aws.refs["ImagesBucket"]


def seed(aws: LocalAws) -> None:
    """The style catalogue and the uploads that the event files name."""
    s3 = aws.client("s3")
    for name in STYLES:
        s3.put_object(Bucket=bucket(aws), Key=f"styles/{name}.jpg", Body=jpeg(), ContentType="image/jpeg")
    s3.put_object(Bucket=bucket(aws), Key="styles/README.txt", Body=b"not a style")  # must be ignored
    s3.put_object(Bucket=bucket(aws), Key="styles/draft.png", Body=PNG, ContentType="image/png")  # not a .jpg
    for key, data, content_type in (
        (UPLOAD_PNG, PNG, "image/png"),
        (UPLOAD_STYLE, jpeg(), "image/jpeg"),
        (UPLOAD_TEXT, b"just some text, not a picture at all", "image/png"),
        (UPLOAD_EMPTY, b"", "image/webp"),
    ):
        s3.put_object(Bucket=bucket(aws), Key=key, Body=data, ContentType=content_type)


def body(path: str) -> dict[str, Any]:
    """The parsed request body of an event file."""
    return json.loads(event(path)["body"])


def with_body(path: str, **changes: Any) -> dict[str, Any]:
    """An event file's event, its body changed (for values only known at run time)."""
    changed = event(path)
    changed["body"] = json.dumps({**body(path), **changes})
    return changed


def event_files(folder: str) -> list[str]:
    return sorted(f"{folder}/{path.name}" for path in (EVENTS / folder).glob("*.json"))


def answer(response: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(event name, data) of a route's response, checking its shape on the way."""
    assert response["statusCode"] == 200
    message = json.loads(response["body"])
    assert set(message) == {"event", "data"}
    return message["event"], message["data"]


def refusal(response: dict[str, Any]) -> str:
    """The ERROR message of a refused request: one line, no traceback, no internal names."""
    name, data = answer(response)
    assert name == "ERROR", data
    text = data["message"]
    assert isinstance(text, str), text
    assert 0 < len(text) <= 300, text
    assert "\n" not in text, text
    assert not re.search(r"Traceback|Exception|botocore|pydantic|https?://errors", text), text
    return text


def keys_under(aws: LocalAws, prefix: str) -> list[str]:
    listing = aws.client("s3").list_objects_v2(Bucket=bucket(aws), Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def job_items(aws: LocalAws) -> list[dict[str, Any]]:
    return aws.client("dynamodb").scan(TableName=aws.refs["JobsTable"])["Items"]


def executions(aws: LocalAws) -> list[dict[str, Any]]:
    sfn = aws.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=aws.refs["TransferStateMachine"])["executions"]


def assert_nothing_started(aws: LocalAws) -> None:
    assert keys_under(aws, "public/") == []
    assert keys_under(aws, "private/") == []
    assert job_items(aws) == []
    assert executions(aws) == []


def jobs_table(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    """The layer's own Jobs store, pointed at moto, to put jobs in the states a test needs."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return Jobs(aws.refs["JobsTable"])
