"""What goes on the results queue: a worker's `progress` and `completed`, and the state machine's
`failed` (built in statemachine/transfer.asl.json's NotifyFailure, in this shape). The notifier
(functions/notify) reads them with these models and turns them into WebSocket pushes.

    ProgressMessage(request_id=job_id, progress=0.5, iteration=100, total=200).body()
    RESULTS_MESSAGE.validate_python(json.loads(body))   # one of the three, by "type"

Unknown extra fields are ignored when reading, so that a newer sender does not break an older
notifier; a field that is there must be right.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from . import keys

# Watching it paint: a progress message may carry a small JPEG of the painting so far, inline;
# bounded well below the 128 KB of a WebSocket message (the worker sends at most 24 KB of JPEG).
MAX_THUMBNAIL_CHARS = 48 * 1024
THUMBNAIL_PATTERN = r"^data:image/jpeg;base64,[A-Za-z0-9+/]+={0,2}$"
MAX_ERROR_CHARS = 2000


def _job_id(value: str) -> str:
    if not keys.JOB_ID.match(value):
        raise ValueError("not a job id (32 lowercase hex digits)")
    return value


def _output_key(value: str) -> str:
    found = keys.job_object(value)
    if found is None or found[1] != "output" or found[3] != "jpg":
        raise ValueError("not a job's output key (<public|private>/output/<jobId>.jpg)")
    return value


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True, frozen=True)
    request_id: Annotated[str, AfterValidator(_job_id)] = Field(alias="requestId")

    def body(self) -> str:
        """The message as the queue carries it."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class ProgressMessage(_Message):
    type: Literal["progress"] = "progress"
    progress: float = Field(ge=0, le=1)
    iteration: int = Field(ge=0)
    total: int = Field(ge=1)
    thumbnail: str | None = Field(default=None, max_length=MAX_THUMBNAIL_CHARS, pattern=THUMBNAIL_PATTERN)


class CompletedMessage(_Message):
    type: Literal["completed"] = "completed"
    result_key: Annotated[str, AfterValidator(_output_key)] = Field(alias="resultKey")


class FailedMessage(_Message):
    type: Literal["failed"] = "failed"
    error: str = Field(min_length=1, max_length=MAX_ERROR_CHARS)


ResultsMessage = Annotated[ProgressMessage | CompletedMessage | FailedMessage, Field(discriminator="type")]
RESULTS_MESSAGE: TypeAdapter[ResultsMessage] = TypeAdapter(ResultsMessage)
