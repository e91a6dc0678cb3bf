"""One style-transfer job, as AWS Batch runs it.

Input: JOB_JSON, the Step Functions execution input
    {"jobId", "inputKey", "styleKey", "outputKey", "isPrivate",
     "options": {"preset", "size", "strength", "preserveColors", "styleScale", "seed"}}
and the environment IMAGES_BUCKET, RESULTS_QUEUE_URL, JOBS_TABLE (boto3 itself honours
AWS_ENDPOINT_URL and the usual credential variables).

Output: the JPEG at outputKey; "progress" messages (at most one every PROGRESS_INTERVAL seconds,
some carrying a small JPEG thumbnail of the painting so far: see ProgressReporter) and one
"completed" message on the results queue; one JSON line on stdout with the seconds each
phase took. On failure: the job item's `error` says why in words a user understands, stderr gets
one line "stylize-worker: error: <reason>", and the exit status says whether retrying can help:
2 for bad input (retrying cannot: a missing object, not an image, a bad JOB_JSON), 1 otherwise.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cuda_start import CudaStart

if TYPE_CHECKING:  # the heavy imports happen inside main(), where their time is measured
    from PIL import Image
    from styletransfer import Options, Progress

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
PROGRESS_INTERVAL = 2.0  # seconds between progress messages: enough for a smooth bar, few SQS calls
JPEG_QUALITY = 92
# Watching it paint: a progress message may carry a thumbnail of the image so far, inline (no S3
# object, no extra request): only once the optimisation has run THUMBNAIL_AFTER seconds, then at
# most one every THUMBNAIL_INTERVAL, THUMBNAIL_SIDE px and at most THUMBNAIL_MAX_BYTES as a JPEG.
THUMBNAIL_AFTER = 4.0
THUMBNAIL_INTERVAL = 5.0
THUMBNAIL_SIDE = 192
THUMBNAIL_QUALITY = 70
THUMBNAIL_MAX_BYTES = 24 * 1024
EARLY_CUDA_VARIABLE = "STYLIZE_EARLY_CUDA"  # "0": PyTorch starts CUDA after its import (see main)
CUDA_START_WAIT = 10.0  # seconds the worker waits, at its end, for a CUDA start still in the driver
DEFAULT_PRESET = "auto"  # standard on a GPU, preview on a CPU (styletransfer.preset)
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # the routes accept far less; anything larger is not a photo
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
OPTION_NAMES = {  # JOB_JSON's camelCase option -> styletransfer.Options field
    "size": "size",
    "strength": "strength",
    "preserveColors": "preserve_colors",
    "styleScale": "style_scale",
    "seed": "seed",
}


class JobError(Exception):
    """A failure with a reason fit for the user; `exit_code` says whether a retry can help."""

    exit_code = EXIT_FAILED


class BadInputError(JobError):
    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Job:
    job_id: str
    input_key: str
    style_key: str
    output_key: str
    is_private: bool
    options: dict[str, Any] = field(default_factory=dict)


def parse_job(text: str | None) -> Job:
    """The execution input, checked: a key this worker writes must be the job's own output key."""
    if not text:
        raise BadInputError("JOB_JSON is not set: the job has no input")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise BadInputError("JOB_JSON is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInputError("JOB_JSON must be a JSON object")
    job_id = data.get("jobId")
    if not (isinstance(job_id, str) and JOB_ID.match(job_id)):
        raise BadInputError("JOB_JSON has no valid jobId (32 lowercase hex digits)")
    for name in ("inputKey", "styleKey", "outputKey"):
        value = data.get(name)
        if not (isinstance(value, str) and 0 < len(value) <= 1024):
            raise BadInputError(f"JOB_JSON has no valid {name}")
    is_private = data.get("isPrivate")
    if not isinstance(is_private, bool):
        raise BadInputError("JOB_JSON's isPrivate must be true or false")
    area = "private" if is_private else "public"
    if data["outputKey"] != f"{area}/output/{job_id}.jpg":
        raise BadInputError(f"JOB_JSON's outputKey must be {area}/output/{job_id}.jpg")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise BadInputError("JOB_JSON's options must be a JSON object")
    return Job(job_id, data["inputKey"], data["styleKey"], data["outputKey"], is_private, options)


def job_id_of(text: str | None) -> str | None:
    """The jobId of a JOB_JSON, if it has a well-formed one, whatever else is wrong with it."""
    try:
        job_id = json.loads(text or "").get("jobId")
    except (json.JSONDecodeError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) and JOB_ID.match(job_id) else None


def engine_options(options: Mapping[str, Any]) -> Options:
    """The job's options as the engine's: the preset, with the fields the user set (None = preset's)."""
    from styletransfer import preset

    name = options.get("preset") or DEFAULT_PRESET
    if not isinstance(name, str):
        raise BadInputError("options.preset must be a preset name")
    overrides: dict[str, Any] = {}
    for key, attribute in OPTION_NAMES.items():
        value = options.get(key)
        if value is None:
            continue
        # JSON has no int/float/bool distinction that Python keeps: true is not 1, 1.5 is not a size
        if attribute == "preserve_colors" and not isinstance(value, bool):
            raise BadInputError("options.preserveColors must be true or false")
        if attribute in ("size", "seed") and (isinstance(value, bool) or not isinstance(value, int)):
            raise BadInputError(f"options.{key} must be a whole number")
        if attribute in ("strength", "style_scale") and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadInputError(f"options.{key} must be a number")
        overrides[attribute] = value
    try:
        return preset(name, **overrides)
    except ValueError as invalid:
        raise BadInputError(f"invalid options: {invalid}") from None


class Timings:
    """Seconds per phase of the main thread, for the one log line that tells where a job's time
    went, and the seconds of the work done beside it (`background`, e.g. the downloads)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.background: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(time.perf_counter() - started, 3)


def seconds_since_process_start() -> float:
    """Wall time since this process began (interpreter start-up included), from /proc on Linux."""
    try:
        with open("/proc/self/stat") as stat:
            # field 22 (starttime) in clock ticks after boot; the name in field 2 may hold spaces
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            return round(float(uptime.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return round(time.perf_counter() - _IMPORTED_AT, 3)


_IMPORTED_AT = time.perf_counter()


def thumbnail(image: Image.Image) -> str | None:
    """A small JPEG of `image` as a data URL; None if even that would be too large to send."""
    from PIL import Image

    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    encoded = io.BytesIO()
    small.save(encoded, format="JPEG", quality=THUMBNAIL_QUALITY)
    if encoded.tell() > THUMBNAIL_MAX_BYTES:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


class ProgressReporter:
    """The engine's progress callback: sends a message on the first iteration, then at most one
    every `interval` seconds, never for the last (the "completed" message follows it). Once the
    optimisation has run `thumbnail_after` seconds, a message carries a thumbnail of the image so
    far, at most one every `thumbnail_interval` seconds. A failed send is logged, not raised: a
    missing progress update is not worth the job."""

    def __init__(
        self,
        job_id: str,
        send: Callable[[dict[str, Any]], None],
        interval: float = PROGRESS_INTERVAL,
        thumbnail_after: float = THUMBNAIL_AFTER,
        thumbnail_interval: float = THUMBNAIL_INTERVAL,
    ) -> None:
        self.job_id = job_id
        self.send = send
        self.interval = interval
        self.thumbnail_after = thumbnail_after
        self.thumbnail_interval = thumbnail_interval
        self.started: float | None = None
        self.last: float | None = None
        self.last_thumbnail: float | None = None
        self.sent = 0
        self.thumbnails = 0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if progress.iteration >= progress.total or (self.last is not None and now - self.last < self.interval):
            return
        self.last = now
        message: dict[str, Any] = {
            "type": "progress",
            "requestId": self.job_id,
            "progress": round(progress.iteration / progress.total, 4),
            "iteration": progress.iteration,
            "total": progress.total,
        }
        if self._thumbnail_due(now) and progress.snapshot is not None:
            self.last_thumbnail = now
            if (small := thumbnail(progress.snapshot())) is not None:
                message["thumbnail"] = small
                self.thumbnails += 1
        try:
            self.send(message)
            self.sent += 1
        except Exception as failure:  # e.g. SQS throttling: the next one may get through
            log("progress not sent", jobId=self.job_id, reason=repr(failure))

    def _thumbnail_due(self, now: float) -> bool:
        assert self.started is not None
        if now - self.started < self.thumbnail_after:
            return False
        return self.last_thumbnail is None or now - self.last_thumbnail >= self.thumbnail_interval


def log(message: str, **fields: Any) -> None:
    print(json.dumps({"message": message, **fields}, default=str), flush=True)


def required_env(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise JobError(f"the worker is misconfigured ({name} is not set)")
    return value


class Worker:
    """The job's steps against AWS (S3, SQS, DynamoDB through boto3).

    Made once PyTorch is imported: a thread then imports boto3, makes the clients and fetches the
    job's two images while the main thread finishes CUDA's start (begun beside the import by
    cuda_start) and puts the network on the GPU, which mostly waits in CUDA's libraries and so
    leaves the thread the interpreter. (Started before `import torch`, this thread only slowed that
    import, measured on an H100: both hold the GIL. The CUDA thread holds it only between calls.)"""

    def __init__(self, job: Job, environ: Mapping[str, str], timings: Timings) -> None:
        self.job = job
        self.timings = timings
        self.bucket = required_env(environ, "IMAGES_BUCKET")
        self.queue_url = required_env(environ, "RESULTS_QUEUE_URL")
        # Before the thread starts: it sets them, and nothing may set them back to None after it.
        self.s3: Any = None
        self.sqs: Any = None
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aws")
        self._fetched = self._background.submit(self._connect_and_fetch)

    def _connect_and_fetch(self) -> tuple[bytes, bytes]:
        started = time.perf_counter()
        try:
            import boto3

            self.s3, self.sqs = boto3.client("s3"), boto3.client("sqs")
            return self.download(self.job.input_key, "content image"), self.download(self.job.style_key, "style image")
        finally:
            self.timings.background["clients_download"] = round(time.perf_counter() - started, 3)

    def fetched(self) -> tuple[bytes, bytes]:
        """The two images' bytes (content, style), once the thread has them; its error, if any."""
        try:
            return self._fetched.result()
        finally:
            self._background.shutdown()

    def send(self, message: dict[str, Any]) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message, separators=(",", ":")))

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

    def run(self) -> dict[str, Any]:
        import styletransfer
        from styletransfer.engine import load_model

        job = self.job
        options = engine_options(job.options)
        with self.timings.phase("model"):
            # the weights and the network on the device (CUDA's start included) while the AWS
            # clients and the images are on their way; the engine keeps the model per process
            device = load_model(options)
            synchronize(device)
        with self.timings.phase("download_wait"):
            content_data, style_data = self.fetched()
        with self.timings.phase("decode"):
            content = self.decode(content_data, "content image")
            style = self.decode(style_data, "style image")
        reporter = ProgressReporter(job.job_id, self.send)
        with self.timings.phase("optimisation"):
            try:
                result = styletransfer.run(content, style, options, progress=reporter)
            except ValueError as invalid:  # the engine's refusals of inputs (e.g. a too thin image)
                raise BadInputError(str(invalid)) from None
            synchronize(device)
        with self.timings.phase("encode_upload"):
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
            self.send({"type": "completed", "requestId": job.job_id, "resultKey": job.output_key})
        return {
            "device": str(device),
            "size": list(result.image.size),
            "iterations": result.iterations,
            "progressMessages": reporter.sent,
            "thumbnails": reporter.thumbnails,
            "loss": result.loss if math.isfinite(result.loss) else None,  # NaN is not JSON
            # each scale's setup and pace: what a fresh process pays per image size (bench_job)
            "scales": [timing.summary() for timing in result.scales],
        }


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """An AWS call's failure as a JobError (exit 1: retrying may help) that names the step."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as failure:
        raise JobError(f"{what} ({failure.response.get('Error', {}).get('Code', 'AWS error')})") from None
    except BotoCoreError as failure:
        raise JobError(f"{what} ({type(failure).__name__})") from None


def synchronize(device: Any) -> None:
    """Wait for queued GPU work, so a phase's seconds include it."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def record_error(environ: Mapping[str, str], job_id: str, reason: str) -> None:
    """Put the reason on the job item, where the state machine's failure path reads it."""
    table = environ.get("JOBS_TABLE")
    if not table:
        log("error not recorded: JOBS_TABLE is not set", jobId=job_id)
        return
    try:
        import boto3
        from botocore.exceptions import ClientError

        boto3.client("dynamodb").update_item(
            TableName=table,
            Key={"jobId": {"S": job_id}},
            UpdateExpression="SET #e = :error, updatedAt = :now",
            ConditionExpression="attribute_exists(jobId)",  # never create an item for an unknown job
            ExpressionAttributeNames={"#e": "error"},
            ExpressionAttributeValues={":error": {"S": reason[:1000]}, ":now": {"N": str(int(time.time() * 1000))}},
        )
    except ClientError as failure:
        log("error not recorded", jobId=job_id, reason=failure.response.get("Error", {}).get("Code", str(failure)))
    except Exception as failure:  # the exit status and stderr still say what happened
        log("error not recorded", jobId=job_id, reason=repr(failure))


def unexpected_reason(failure: BaseException) -> str:
    if type(failure).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return "the GPU ran out of memory at this size: try a smaller size"
    return f"the style transfer failed unexpectedly ({type(failure).__name__})"


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the job that `environ` (default: os.environ) describes; the process's exit status."""
    environ = os.environ if environ is None else environ
    timings = Timings()
    # CUDA's driver and context in a thread while PyTorch imports (cuda_start); "0" leaves CUDA's
    # start to PyTorch, after the import (bench_job's comparison)
    cuda = CudaStart() if environ.get(EARLY_CUDA_VARIABLE, "1") != "0" else None
    job_id: str | None = None
    summary: dict[str, Any] = {}
    try:
        job_id = job_id_of(environ.get("JOB_JSON"))  # so that even a bad input's reason is recorded
        job = parse_job(environ.get("JOB_JSON"))
        with timings.phase("imports"):
            import styletransfer  # noqa: F401 - imports torch: seconds on a cold container
        summary = Worker(job, environ, timings).run()  # AWS clients and images in a thread from here
        status, reason = EXIT_OK, None
    except JobError as failure:
        status, reason = failure.exit_code, str(failure)
    except Exception as failure:
        status, reason = EXIT_FAILED, unexpected_reason(failure)
        log("unexpected failure", jobId=job_id, traceback=traceback.format_exc())  # for operators only
    if cuda is not None:
        # Not to exit while the driver is inside a call (its teardown would race its start): the
        # thread is long done in any job that ran, so this waits only for one that failed at once.
        cuda.join(timeout=CUDA_START_WAIT)
        timings.background["cuda_start"] = cuda.seconds  # None only if it is still in the driver
        summary["cudaStart"] = cuda.outcome
    log(
        "stylize-worker timings",
        jobId=job_id,
        outcome="succeeded" if status == EXIT_OK else "failed",
        phases=timings.phases,
        background=timings.background,
        total=seconds_since_process_start(),
        **summary,
    )
    if reason is not None:
        if job_id is not None:
            record_error(environ, job_id, reason)
        print(f"stylize-worker: error: {reason}", file=sys.stderr, flush=True)
    return status
