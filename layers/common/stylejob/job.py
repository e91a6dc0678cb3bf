"""The job message: what TRANSFER_STYLE starts the state machine with (the execution input), what
the state machine hands a worker on the work queue, and what the worker answers.

    job = Job.new(private=False, content_type="image/png", style_key="styles/udnie.jpg", options=...)
    job.model_dump(by_alias=True)            # the execution input, camelCase
    WorkItem.model_validate_json(body)       # a worker's message: {"job": {...}, "taskToken": "..."}
    TaskResult(...).model_dump_json(...)     # SendTaskSuccess's output

Every model is strict (JSON's true is not 1, "5" is not a number) and refuses unknown fields and
the fields' Python names: the protocol's client requests and the service's own processes read the
job the same way. The bounds here are the service's (a shared GPU); the engine has looser ones of
its own for the command line.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from . import keys

# "auto": the preset that suits the worker's device (standard on a GPU, preview on a CPU); the
# others are styletransfer.PRESETS' names (a test holds the two together)
PRESETS = ("auto", "preview", "standard", "high")
Preset = Literal["auto", "preview", "standard", "high"]
MIN_SIZE, MAX_SIZE = 64, 2048  # px, the result's longer side
DECIMALS = 4  # strength and styleScale are kept to this many decimal places

# The names a worker fails a task with (SendTaskFailure's error); the state machine's Catch tells
# them apart, and a failure's cause is the reason shown to the user.
BAD_INPUT = "StyleTransfer.BadInput"  # the images or options: the same job would fail the same way
FAILED = "StyleTransfer.Failed"  # anything else the worker can name (storage, GPU memory, a bug)
WORKER_LOST = "StyleTransfer.WorkerLost"  # the job stopped its worker MaxAttempts times
TASK_ERRORS = (BAD_INPUT, FAILED, WORKER_LOST)


class Contract(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="forbid", alias_generator=to_camel, validate_by_name=False, frozen=True
    )


def _storable(value: float) -> float:
    """A number DynamoDB can store (between 1e-130 and 1e126 in magnitude, or zero) and that
    means the same to the engine: 4 decimal places are finer than any visible difference.
    (1e-200 passed the 0..1 check once and failed only when the job was written, after the
    photo was stored: rounding here, before anything is written, makes every accepted number
    storable.)"""
    return round(value, DECIMALS) + 0.0  # + 0.0: no negative zero


def _matches(pattern: keys.re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"not {what}")
        return value

    return AfterValidator(check)


Fraction = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(_storable)]
StyleScale = Annotated[float, Field(ge=0.25, le=2.0), AfterValidator(_storable)]
JobId = Annotated[str, Field(min_length=32, max_length=32), _matches(keys.JOB_ID, "a job id (32 lowercase hex digits)")]


class JobOptions(Contract):
    """The engine's user-facing options, bounded for a shared service."""

    preset: Preset = "auto"
    size: int | None = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE)  # None: the preset's
    strength: Fraction = 0.5
    preserve_colors: bool = False
    style_scale: StyleScale = 1.0
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # one weight per style of a blend, in the job's order of styles (None: equal shares); the
    # engine and the preview divide by their sum
    style_blend: list[Fraction] | None = Field(default=None, min_length=1, max_length=keys.MAX_STYLES)

    @model_validator(mode="after")
    def _blend_has_weight(self) -> JobOptions:
        if self.style_blend is not None and sum(self.style_blend) <= 0:
            raise ValueError("styleBlend needs a weight above 0")  # shown as "options: styleBlend needs ..."
        return self


class Job(Contract):
    """One style transfer: its id, its objects and its options. The keys must be the job's own
    (its id, its area), so a worker writes nowhere else and reads only what the job owns or the
    catalogue holds.

    A blend of paintings names its first style in `styleKey` and the others, in order, in
    `blendKeys` (at most MAX_STYLES in all), with `options.styleBlend` holding one weight per style;
    a job of one style has no `blendKeys` (its message is the same as before blends existed)."""

    job_id: JobId
    input_key: str = Field(max_length=200)
    style_key: str = Field(max_length=200)
    blend_keys: list[Annotated[str, Field(max_length=200)]] = Field(default=[], max_length=keys.MAX_STYLES - 1)
    output_key: str = Field(max_length=200)
    is_private: bool
    options: JobOptions = JobOptions()

    @property
    def style_keys(self) -> list[str]:
        """Every style image of the job, in order: the first, then the blend's others."""
        return [self.style_key, *self.blend_keys]

    @model_validator(mode="after")
    def _keys_are_the_jobs(self) -> Job:
        found = keys.job_object(self.input_key)
        if found is None or found[:3] != (self.is_private, "input", self.job_id):
            raise ValueError(f"inputKey must be {keys.input_key(self.job_id, self.is_private, '<jpg|png|webp>')}")
        if self.output_key != keys.output_key(self.job_id, self.is_private):
            raise ValueError(f"outputKey must be {keys.output_key(self.job_id, self.is_private)}")
        for place, key in enumerate(self.style_keys):
            own = keys.own_style(key)
            if not (keys.is_catalogue_key(key) or own == (self.is_private, self.job_id, place)):
                field = "styleKey" if place == 0 else f"blendKeys.{place - 1}"
                raise ValueError(
                    f"{field} must be a catalogue style (styles/<name>.jpg) or the job's own copy "
                    f"({keys.own_style_key(self.job_id, self.is_private, '<jpg|png|webp>', place)})"
                )
        blend = self.options.style_blend
        if blend is not None and len(blend) != len(self.style_keys):
            raise ValueError(f"options.styleBlend has {len(blend)} weights for {len(self.style_keys)} styles")
        return self

    @classmethod
    def new(
        cls,
        *,
        private: bool,
        content_type: str,
        style_key: str,
        options: JobOptions,
        job_id: str | None = None,
        blend_keys: list[str] | None = None,
    ) -> Job:
        """A new job whose photo is of `content_type` (with a fresh id unless `job_id` is given: a
        job whose own style's key is made from its id); `blend_keys`, the other styles of a blend."""
        job_id = keys.new_job_id() if job_id is None else job_id
        message: dict[str, object] = {
            "jobId": job_id,
            "inputKey": keys.input_key(job_id, private, keys.EXTENSIONS[content_type]),
            "styleKey": style_key,
            "outputKey": keys.output_key(job_id, private),
            "isPrivate": private,
            "options": options,
        }
        if blend_keys:
            message["blendKeys"] = blend_keys
        return cls.model_validate(message, strict=False)  # `options` is already a model

    def message(self) -> dict[str, object]:
        """The job as the state machine carries it (camelCase, JSON types). What a job of one
        style does not use is left out (blendKeys, options.styleBlend), so that its message is
        the one every reader of the contract already knew."""
        found = self.model_dump(mode="json", by_alias=True)
        if not self.blend_keys:
            del found["blendKeys"]
        if self.options.style_blend is None:
            del found["options"]["styleBlend"]
        return found


class Internal(Contract):
    """A model the service's own processes make (never a client): built by field name too."""

    model_config = ConfigDict(validate_by_name=True)


class WorkItem(Internal):
    """A message on the work queue: the job and the state machine's task token, which the worker
    answers with SendTaskHeartbeat while it runs and SendTaskSuccess or SendTaskFailure at its end."""

    job: Job
    task_token: str = Field(min_length=1, max_length=1024)


class TaskResult(Internal):
    """SendTaskSuccess's output: the state machine records the job's end from it."""

    result_key: str
    completed_at: int  # epoch ms: when the result was stored
    worker_id: str
    attempt: int = Field(ge=1)

    def output(self) -> str:
        return self.model_dump_json(by_alias=True)
