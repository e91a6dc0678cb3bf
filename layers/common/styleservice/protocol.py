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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from stylejob import keys
from stylejob.job import Fraction, JobOptions

# Actions (routes)
TRANSFER_STYLE = "TRANSFER_STYLE"
REQUEST_UPLOAD = "REQUEST_UPLOAD"
LIST_STYLES = "LIST_STYLES"
LIST_IMAGES = "LIST_IMAGES"
GET_JOB = "GET_JOB"
GET_SERVICE = "GET_SERVICE"
PREVIEW_STYLES = "PREVIEW_STYLES"
DELETE_JOB = "DELETE_JOB"
GET_IMAGE = "GET_IMAGE"
ACTIONS = (
    TRANSFER_STYLE, REQUEST_UPLOAD, LIST_STYLES, LIST_IMAGES, GET_JOB, GET_SERVICE, PREVIEW_STYLES, DELETE_JOB,
    GET_IMAGE,
)  # fmt: skip

# Events: answers to a request
ACCEPTED = "TRANSFER_STYLE_ACCEPTED"  # {jobId, jobToken}
UPLOAD_READY = "UPLOAD_READY"  # {key, url, fields, expiresIn}
STYLES = "STYLES"  # {styles: [{name, previewUrl}]}
IMAGES = "IMAGES"  # {images: [{jobId, input, result, style, completedAt}], cursor}
JOB = "JOB"  # {jobId, status, progress, style, blend?, isPrivate, input, createdAt, preview?, result?, ...}
SERVICE = "SERVICE"  # {device, sizes, defaultSize, pace, workersUp, ...}: what the service offers
STYLE_PREVIEWS_DONE = "STYLE_PREVIEWS_DONE"  # {requestId?, count, skipped}: after the STYLE_PREVIEW pushes
JOB_DELETED = "JOB_DELETED"  # {jobId}
IMAGE = "IMAGE"  # {jobId, input, result, style, blend?, completedAt}: one public painting
ERROR = "ERROR"  # {action, message}
# Events: pushed while and after a job runs
PREVIEW = "TRANSFER_STYLE_PREVIEW"  # ::<jobId> {preview}: the instant preview, before the painting
PROGRESS = "TRANSFER_STYLE_PROGRESS"  # ::<jobId> {progress, iteration, total, thumbnail?}
COMPLETED = "TRANSFER_STYLE_COMPLETED"  # ::<jobId> {result}; and, for public jobs, to everyone
FAILED = "TRANSFER_STYLE_FAILED"  # ::<jobId> {error}
# Events: pushed while PREVIEW_STYLES runs, to its connection only
STYLE_PREVIEW = "STYLE_PREVIEW"  # {requestId?, style, preview}: one style on the photo, as it is made
# Events: pushed to every connection
IMAGE_REMOVED = "IMAGE_REMOVED"  # {jobId}: its owner took a public painting back

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit (not adjustable)
MAX_PREVIEW_STYLES = 24  # styles one PREVIEW_STYLES may name (without a list: the catalogue, at most this many)
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


StyleRef = Annotated[str, Field(min_length=1, max_length=200)]  # a catalogue name, or an upload's key
ImageRef = Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_BYTES)]  # a data URL, or an upload's key
# A client's own tag for a request, echoed in what answers it (PREVIEW_STYLES' pushes)
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]


def _refuse(text: str) -> PydanticCustomError:
    """A refusal whose words are the ERROR's, whole (parse() shows it as it is)."""
    return PydanticCustomError("refused", text)


def _style_or_blend(value: object) -> str | list[str]:
    """TRANSFER_STYLE's style: one style, or a list of 1 to MAX_STYLES, each a name or a key."""
    shape = f"style must be a style name or an upload's key, or a list of 1 to {keys.MAX_STYLES} of them"
    items = value if isinstance(value, list) else [value]
    if not (1 <= len(items) <= keys.MAX_STYLES) or not all(isinstance(item, str) for item in items):
        raise _refuse(shape)
    if any(not 1 <= len(item) <= 200 for item in items):
        raise _refuse("style: a style name or key has 1 to 200 characters")
    return value  # type: ignore[return-value]  # checked above


def _each_once(styles: list[str], field: str) -> None:
    if len(set(styles)) != len(styles):
        raise _refuse(f"{field}: a blend names each style once")


class TransferStyle(_Request):
    action: Literal["TRANSFER_STYLE"]
    image: ImageRef
    # one style, or a blend of up to three (with options.styleBlend, one weight each)
    style: Annotated[str | list[str], PlainValidator(_style_or_blend)]
    is_private: bool
    options: JobOptions = JobOptions()  # the job's own model: what the worker reads is what was checked

    @property
    def styles(self) -> list[str]:
        return [self.style] if isinstance(self.style, str) else list(self.style)

    @model_validator(mode="after")
    def _one_weight_per_style(self) -> TransferStyle:
        _each_once(self.styles, "style")
        blend = self.options.style_blend
        if blend is not None and len(blend) != len(self.styles):
            raise _refuse(
                f"options.styleBlend has {len(blend)} weight{'s' if len(blend) != 1 else ''} for "
                f"{len(self.styles)} style{'s' if len(self.styles) != 1 else ''}: give one weight per style"
            )
        return self


class PreviewStyles(_Request):
    """Every style (or those named) on the photo, by the preview network: a STYLE_PREVIEW each."""

    action: Literal["PREVIEW_STYLES"]
    image: ImageRef
    styles: Annotated[list[StyleRef], Field(min_length=1, max_length=MAX_PREVIEW_STYLES)] | None = None
    strength: Fraction = 0.5
    preserve_colors: bool = False
    # the styles as one blend (2 or 3 of them, one weight each): a single STYLE_PREVIEW
    style_blend: Annotated[list[Fraction], Field(min_length=2, max_length=keys.MAX_STYLES)] | None = None
    request_id: RequestId | None = None

    @model_validator(mode="after")
    def _blend_names_its_styles(self) -> PreviewStyles:
        if self.styles is not None:
            _each_once(self.styles, "styles")
        if self.style_blend is None:
            return self
        if self.styles is None or len(self.styles) != len(self.style_blend):
            raise _refuse("styleBlend needs styles: the 2 or 3 styles of the blend, one weight each")
        if sum(self.style_blend) <= 0:
            raise _refuse("styleBlend needs a weight above 0")
        return self


class GetService(_Request):
    action: Literal["GET_SERVICE"]


class DeleteJob(_Request):
    action: Literal["DELETE_JOB"]
    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    job_token: str = Field(min_length=1, max_length=200)


class GetImage(_Request):
    action: Literal["GET_IMAGE"]
    job_id: str = Field(pattern=r"^[0-9a-f]{32}$")


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
        if first["type"] == "refused":  # a model's own refusal: its words are whole
            raise ProtocolError(first["msg"]) from None
        where = printable(".".join(str(part) for part in first["loc"]) or "message", 80)
        if first["type"] == "missing":
            raise ProtocolError(f"{where} is required") from None
        if first["type"] == "extra_forbidden":
            raise ProtocolError(f"unknown field {where}") from None
        if where == "image" and first["type"] == "string_too_long":
            raise ProtocolError(
                f"image is over the {MAX_MESSAGE_BYTES // 1024} KB message limit: send large photos with REQUEST_UPLOAD"
            ) from None
        # a validator's ValueError reads "Value error, <its words>": the words are what the client needs
        raise ProtocolError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


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
