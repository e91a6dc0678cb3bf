"""The WebSocket protocol: what clients send, what the service answers and pushes.

Client to server: JSON with an `action` (the API's route selection is `$request.body.action`).
Server to client: `{"event": NAME, "data": {...}}`. Job events carry the job id in the name,
`TRANSFER_STYLE_COMPLETED::<jobId>`, so a page can listen for exactly its own job.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from stylejob.job import JobOptions

# Actions (routes)
TRANSFER_STYLE = "TRANSFER_STYLE"
REQUEST_UPLOAD = "REQUEST_UPLOAD"
LIST_STYLES = "LIST_STYLES"
LIST_IMAGES = "LIST_IMAGES"
GET_JOB = "GET_JOB"
ACTIONS = (TRANSFER_STYLE, REQUEST_UPLOAD, LIST_STYLES, LIST_IMAGES, GET_JOB)

# Events: answers to a request
ACCEPTED = "TRANSFER_STYLE_ACCEPTED"  # {jobId, jobToken}
UPLOAD_READY = "UPLOAD_READY"  # {key, url, fields, expiresIn}
STYLES = "STYLES"  # {styles: [{name, previewUrl}]}
IMAGES = "IMAGES"  # {images: [{jobId, input, result, style, completedAt}], cursor}
JOB = "JOB"  # {jobId, status, progress, preview?, result?, error?}
ERROR = "ERROR"  # {action, message}
# Events: pushed while and after a job runs
PREVIEW = "TRANSFER_STYLE_PREVIEW"  # ::<jobId> {preview}: the instant preview, before the painting
PROGRESS = "TRANSFER_STYLE_PROGRESS"  # ::<jobId> {progress, iteration, total, thumbnail?}
COMPLETED = "TRANSFER_STYLE_COMPLETED"  # ::<jobId> {result}; and, for public jobs, to everyone
FAILED = "TRANSFER_STYLE_FAILED"  # ::<jobId> {error}

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit (not adjustable)
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp")


class ProtocolError(ValueError):
    """A request the service refuses; the message is shown to the client as is."""


def for_job(event: str, job_id: str) -> str:
    return f"{event}::{job_id}"


def message(event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "data": data}


def error(action: str | None, text: str) -> dict[str, Any]:
    return message(ERROR, {"action": action, "message": text})


class _Request(BaseModel):
    # strict: "true" is not a boolean and "5" is not a number; unknown fields are mistakes, and so
    # is a field's Python name (is_private): clients speak only the protocol's camelCase names
    model_config = ConfigDict(strict=True, extra="forbid", alias_generator=to_camel, validate_by_name=False)


class TransferStyle(_Request):
    action: Literal["TRANSFER_STYLE"]
    image: str = Field(min_length=1, max_length=MAX_MESSAGE_BYTES)  # data URL, or an upload's key
    style: str = Field(min_length=1, max_length=200)  # a catalogue name, or an upload's key
    is_private: bool
    options: JobOptions = JobOptions()  # the job's own model: what the worker reads is what was checked


class RequestUpload(_Request):
    action: Literal["REQUEST_UPLOAD"]
    content_type: Literal["image/jpeg", "image/png", "image/webp"]
    size: int = Field(gt=0)


class ListStyles(_Request):
    action: Literal["LIST_STYLES"]


class ListImages(_Request):
    action: Literal["LIST_IMAGES"]
    limit: int = Field(default=20, ge=1, le=50)
    cursor: str | None = Field(default=None, max_length=2000)


class GetJob(_Request):
    action: Literal["GET_JOB"]
    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    job_token: str = Field(min_length=1, max_length=200)


# No message of the protocol is more than three levels deep (TRANSFER_STYLE.options); this bound
# is the protocol's own, the same in every process. (json's C parser would otherwise stop only at
# the interpreter's recursion limit, which is global state that any library may change.)
MAX_NESTING = 16
_STRUCTURE = re.compile(r'[\[\]{}"\\]')  # what opens, closes, or starts/escapes a string


def nesting_exceeds(body: str, limit: int = MAX_NESTING) -> bool:
    """Whether the JSON text opens more than `limit` arrays and objects inside each other
    (brackets inside strings do not count). Read before parsing, so that a deep message costs one
    regular-expression scan and never reaches the parser's recursion."""
    depth, in_string, escaped_at = 0, False, -1
    for found in _STRUCTURE.finditer(body):
        at, char = found.start(), found.group()
        if at == escaped_at:  # the character after a backslash, e.g. \" inside a string
            continue
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_json(body: str) -> Any:
    """The JSON value of a message, or ProtocolError for anything json cannot or will not read:
    bad syntax, nesting deeper than MAX_NESTING, and integers over Python's 4300-digit
    conversion limit (ValueError)."""
    if nesting_exceeds(body):
        raise ProtocolError("the message is nested too deeply")
    try:
        return json.loads(body)
    except ValueError as invalid:  # JSONDecodeError is a ValueError too
        if "digits" in str(invalid):
            raise ProtocolError("the message holds a number with too many digits") from None
        raise ProtocolError("the message is not valid JSON") from None


def printable(text: str, limit: int = 40) -> str:
    """A client's string as it may be echoed or logged: at most `limit` characters, and lone
    surrogates (valid in JSON, not in UTF-8) escaped so that writing the log line cannot fail."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def parse(body: str | None, model: type[_Request]) -> Any:
    """Validate a request body against its model; every failure is one readable ProtocolError."""
    if not body:
        raise ProtocolError("empty message: send a JSON object with an 'action'")
    data = load_json(body)
    if not isinstance(data, dict):
        raise ProtocolError("the message must be a JSON object with an 'action'")
    try:
        return model.model_validate(data)
    except ValidationError as invalid:
        first = invalid.errors(include_input=False, include_url=False)[0]
        where = printable(".".join(str(part) for part in first["loc"]) or "message", 80)
        if first["type"] == "missing":
            raise ProtocolError(f"{where} is required") from None
        if first["type"] == "extra_forbidden":
            raise ProtocolError(f"unknown field {where}") from None
        if where == "image" and first["type"] == "string_too_long":
            raise ProtocolError(
                f"image is over the {MAX_MESSAGE_BYTES // 1024} KB message limit: send large photos with REQUEST_UPLOAD"
            ) from None
        raise ProtocolError(f"{where}: {first['msg']}") from None


_DATA_URL = re.compile(r"^data:(image/[a-z]+);base64,([A-Za-z0-9+/=\s]+)$")
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def sniff(data: bytes) -> str | None:
    """The image type that the bytes themselves say, whatever the client claimed."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(content type, bytes) of a base64 image data URL whose bytes really are that image type."""
    match = _DATA_URL.match(url)
    if not match:
        raise ProtocolError("image must be a base64 data URL (data:image/jpeg;base64,...) or an upload key")
    claimed = match.group(1)
    if claimed not in ALLOWED_TYPES:
        raise ProtocolError(f"{claimed} is not accepted: send JPEG, PNG or WebP")
    try:
        data = base64.b64decode(match.group(2), validate=False)
    except (binascii.Error, ValueError):
        raise ProtocolError("the image data URL is not valid base64") from None
    actual = sniff(data)
    if actual is None:
        raise ProtocolError("the image is not a JPEG, PNG or WebP file")
    if actual != claimed:
        raise ProtocolError(f"the image says {claimed} but its bytes are {actual}")
    return actual, data
