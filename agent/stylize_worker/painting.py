"""One job's painting on a warm worker: the two images from S3, the engine, the JPEG back to S3
and the "completed" message. Its failures are JobErrors whose text a user can read."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stylejob.job import BAD_INPUT, FAILED, Job
from stylejob.messages import CompletedMessage

if TYPE_CHECKING:
    from PIL import Image
    from styletransfer import Options

    from .progress import ProgressReporter

JPEG_QUALITY = 92
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # the routes accept far less; anything larger is not a photo
OPTION_NAMES = {  # the job's camelCase option -> styletransfer.Options field (checked by the contract)
    "size": "size",
    "strength": "strength",
    "preserveColors": "preserve_colors",
    "styleScale": "style_scale",
    "seed": "seed",
}


ORDINALS = ("first", "second", "third")


class JobError(Exception):
    """A failure with a reason fit for the user; `error` is the task's failure name."""

    error = FAILED


class BadInputError(JobError):
    error = BAD_INPUT


def engine_options(job: Job) -> Options:
    """The job's options as the engine's: the preset, with the fields the user set (None = the
    preset's). The contract (stylejob) has checked names, types and the service's bounds."""
    from styletransfer import preset

    options = job.options.model_dump(by_alias=True)
    overrides: dict[str, object] = {
        attribute: options[name] for name, attribute in OPTION_NAMES.items() if options[name] is not None
    }
    if job.options.style_blend is not None:  # one weight per style image (the contract checked the count)
        overrides["style_blend"] = tuple(job.options.style_blend)
    try:
        return preset(job.options.preset, **overrides)
    except ValueError as invalid:  # the engine's own bounds: not reached with the contract's
        raise BadInputError(f"invalid options: {invalid}") from None


@dataclass
class Phases:
    """Seconds per step of a painting, for the one log line that tells where a job's time went."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """An AWS call's failure as a JobError that names the step."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as failure:
        raise JobError(f"{what} ({failure.response.get('Error', {}).get('Code', 'AWS error')})") from None
    except BotoCoreError as failure:
        raise JobError(f"{what} ({type(failure).__name__})") from None


def unexpected_reason(failure: BaseException) -> str:
    if type(failure).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return "the GPU ran out of memory at this size: try a smaller size"
    return f"the style transfer failed unexpectedly ({type(failure).__name__})"


class Painter:
    """Paints jobs with the worker's clients (S3, SQS) and its model (loaded once per process)."""

    def __init__(self, s3: Any, sqs: Any, environ: Mapping[str, str], device: Any) -> None:
        self.s3 = s3
        self.sqs = sqs
        self.bucket = environ["IMAGES_BUCKET"]
        self.results_queue = environ["RESULTS_QUEUE_URL"]
        self.device = device

    def send(self, message: Any) -> None:
        """A message (stylejob.messages) on the results queue."""
        self.sqs.send_message(QueueUrl=self.results_queue, MessageBody=message.body())

    def download(self, key: str, what: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=key)
            if found["ContentLength"] > MAX_IMAGE_BYTES:
                raise BadInputError(f"the {what} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
            return found["Body"].read()
        except ClientError as failure:
            code = failure.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise BadInputError(f"the {what} was not found (uploads expire after a day)") from None
            raise JobError(f"the {what} could not be read from storage ({code or 'S3 error'})") from None

    def decode(self, data: bytes, what: str) -> Image.Image:
        from styletransfer import ImageError, open_image

        try:
            return open_image(io.BytesIO(data), what=what)
        except ImageError as invalid:
            raise BadInputError(f"the {invalid}") from None  # "the style image is not an image ..."

    def paint(self, job: Job, reporter: ProgressReporter, phases: Phases) -> dict[str, Any]:
        """The job's result stored at its output key and announced; a summary for the log."""
        import styletransfer

        options = engine_options(job)
        # a blend's style images are named in their order in the user's words ("the second style image")
        names = (
            ["style image"]
            if len(job.style_keys) == 1
            else [f"{ORDINALS[n]} style image" for n in range(len(job.style_keys))]
        )
        with phases.phase("download"):
            content_data = self.download(job.input_key, "content image")
            style_data = [self.download(key, name) for key, name in zip(job.style_keys, names, strict=True)]
        with phases.phase("decode"):
            content = self.decode(content_data, "content image")
            styles = [self.decode(data, name) for data, name in zip(style_data, names, strict=True)]
        with phases.phase("optimisation"):
            try:
                result = styletransfer.run(content, styles, options, progress=reporter)
            except ValueError as invalid:  # the engine's refusals of inputs (e.g. a too thin image)
                raise BadInputError(str(invalid)) from None
            synchronize(self.device)
        with phases.phase("encode_upload"):
            encoded = io.BytesIO()
            result.image.save(encoded, format="JPEG", quality=JPEG_QUALITY)
            with aws_errors("the result could not be stored"):
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=job.output_key,
                    Body=encoded.getvalue(),
                    ContentType="image/jpeg",
                    CacheControl="public, max-age=31536000, immutable",  # one key per job: never changes
                )
        with aws_errors("the result could not be announced"):
            self.send(CompletedMessage(request_id=job.job_id, result_key=job.output_key))
        return {
            "size": list(result.image.size),
            "iterations": result.iterations,
            "progressMessages": reporter.sent,
            "thumbnails": reporter.thumbnails,
            "loss": result.loss if math.isfinite(result.loss) else None,  # NaN is not JSON
            "scales": [timing.summary() for timing in result.scales],
        }


def synchronize(device: Any) -> None:
    """Wait for queued GPU work, so a phase's seconds include it."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)
