"""TRANSFER_STYLE: check the photo and the style, store the photo (and an uploaded style image)
under the job's own keys, record the job and start its Step Functions execution; answer with the
job's id and its secret token.

Every check runs before anything is written, so a refused request leaves nothing behind: no
object, no job item, no execution (except when an upload changed between its check and its copy:
then at most the copy of the style, which expires within a day)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from stylejob import keys
from stylejob.job import Job
from styleservice.image_check import check_image
from styleservice.jobs import Jobs, new_token
from styleservice.limits import Admissions, RateLimits, address_limits, connection_limit
from styleservice.protocol import (
    ACCEPTED,
    ERROR,
    TRANSFER_STYLE,
    ProtocolError,
    TransferStyle,
    decode_data_url,
    error,
    message,
    printable,
)
from styleservice.routes import connection_id, route
from styleservice.settings import settings
from styleservice.storage import object_start, s3_client
from styleservice.uploads import read_upload

logger = Logger()
tracer = Tracer()
metrics = Metrics()
s3 = s3_client()
states = boto3.client("stepfunctions")
jobs = Jobs()
rate_limits = RateLimits()
admissions = Admissions()

CUSTOM_STYLE = "custom"  # the job's `style` when the style image is the client's own upload
IMAGE_FORMS = "a base64 data URL (data:image/jpeg;base64,...) or a key from REQUEST_UPLOAD (uploads/<32 hex>.jpg)"
STYLE_FORMS = "a style name from LIST_STYLES or a key from REQUEST_UPLOAD (uploads/<32 hex>.jpg)"
START_FAILED = "the service could not start the job"
# what the worker calls the images in its reasons ("the content image is damaged or truncated",
# in a blend "the second style image is ...")
CONTENT, STYLE = "content image", "style image"
ORDINALS = ("first", "second", "third")


class Image(NamedTuple):
    content_type: str  # what the bytes are, whatever the client claimed
    data: bytes | None = None  # a data URL's bytes ...
    upload_key: str | None = None  # ... or an upload to copy
    etag: str = ""


def checked_upload(key: str, field: str, what: str) -> tuple[str, str]:
    """(content type, ETag) of an upload that exists and is an image the worker can decode."""
    upload = read_upload(s3, key, field)
    check_image(upload.data, what)
    return upload.content_type, upload.etag


def resolve_image(value: str) -> Image:
    if value.startswith("data:"):
        content_type, data = decode_data_url(value)
        check_image(data, CONTENT)
        return Image(content_type, data=data)
    if keys.is_upload_key(value):
        content_type, etag = checked_upload(value, "image", CONTENT)
        return Image(content_type, upload_key=value, etag=etag)
    # anything else (other folders, '..', absolute paths, %-encodings) names no object of the client's
    raise ProtocolError(f"image must be {IMAGE_FORMS}")


Resolved = tuple[str, str, Image | None]  # (style for the job item, key of the style image, the upload to copy)


def resolve_style(value: str, field: str = "style", what: str = STYLE) -> Resolved:
    """(style for the job item, key of the style image, the upload to copy for the job or None)."""
    if keys.STYLE_NAME.match(value):
        key = keys.style_key(value)
        if object_start(s3, key) is None:
            raise ProtocolError(f"unknown style {printable(value)!r}: LIST_STYLES gives the catalogue")
        return value, key, None
    if keys.is_upload_key(value):
        content_type, etag = checked_upload(value, field, what)
        return CUSTOM_STYLE, value, Image(content_type, upload_key=value, etag=etag)
    raise ProtocolError(f"{field} must be {STYLE_FORMS}")


def blend_shares(styles: list[str], weights: list[float] | None) -> list[dict[str, Any]]:
    """A blend as the job item, the Feed and GET_JOB tell it: each style's share, summing to 1."""
    given = weights if weights is not None else [1.0] * len(styles)
    total = sum(given)
    return [{"style": style, "weight": round(weight / total, 4)} for style, weight in zip(styles, given, strict=True)]


def store(image: Image, key: str, field: str = "image") -> None:
    bucket = settings.images_bucket
    if image.data is not None:
        s3.put_object(Bucket=bucket, Key=key, Body=image.data, ContentType=image.content_type)
        return
    # exactly the bytes that were sniffed: the presigned POST stays valid for a while and could
    # replace the upload in between
    condition = {"CopySourceIfMatch": image.etag} if image.etag else {}
    try:
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": image.upload_key},
            MetadataDirective="REPLACE",
            ContentType=image.content_type,
            **condition,
        )
    except ClientError as failure:
        if failure.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            raise ProtocolError(f"{field}: the upload changed while it was checked; send the request again") from None
        raise


def check_limits(event: dict[str, Any], job_id: str) -> Callable[[], None]:
    """Admits the job (a place among MaxActiveJobs in flight, taken atomically) or refuses it
    (ProtocolError): too many in flight, or too many lately from this connection or this address.
    Admission comes first, so that a busy service takes nothing off anyone's allowance; a job one
    limit (or a failure) refuses gives back its place and what the other limits took, so no
    refusal spends any allowance. Returns what gives all of it back, for a job that then fails to
    start."""
    source_ip = event["requestContext"].get("identity", {}).get("sourceIp", "")
    try:
        admissions.admit(job_id, settings.max_active_jobs)
    except (ClientError, BotoCoreError):  # no count, no job: a limit must hold when it cannot be read
        logger.exception("the job could not be admitted")
        raise ProtocolError(f"{START_FAILED}; please try again") from None
    counts, now = [(connection_limit(), f"connection#{connection_id(event)}"), *address_limits(source_ip)], time.time()
    try:
        rate_limits.take_all(counts, now)
    except (ProtocolError, ClientError, BotoCoreError) as refused:
        give_back(job_id)
        if isinstance(refused, ProtocolError):
            raise
        logger.exception("the limits could not be checked")
        raise ProtocolError(f"{START_FAILED}; please try again") from None
    return lambda: give_back(job_id, counts, now)


def give_back(job_id: str, counts: list[tuple[Any, str]] | None = None, now: float = 0.0) -> None:
    """The job's place, and the counts it took (the same `now`: the same windows), back."""
    try:
        admissions.release(job_id)
        for limit, subject in counts or []:
            rate_limits.give_back(limit, subject, now)
    except (ClientError, BotoCoreError):  # at worst one place or count fewer, until it expires
        logger.exception("a job's place or counts could not be given back")


def submit(request: TransferStyle, event: dict[str, Any]) -> dict[str, Any]:
    image = resolve_image(request.image)
    blend = len(request.styles) > 1
    resolved = [
        resolve_style(
            value, f"style.{place}" if blend else "style", f"{ORDINALS[place]} style image" if blend else STYLE
        )
        for place, value in enumerate(request.styles)
    ]
    job_id = keys.new_job_id()
    try:
        undo = check_limits(event, job_id)
    except ProtocolError:
        # a rising count says the limits bite: a busy service, or a client hammering it
        metrics.add_metric(name="TransferLimited", unit=MetricUnit.Count, value=1)
        raise
    try:
        answer = start(request, event, job_id, image, resolved)
    except BaseException:
        undo()  # nothing was started: the place and the counts are free again
        raise
    if answer["event"] == ERROR:
        undo()
    return answer


def start(
    request: TransferStyle, event: dict[str, Any], job_id: str, image: Image, resolved: list[Resolved]
) -> dict[str, Any]:
    """Stores the job's images, records it and starts its execution (its place is taken)."""
    private, blend = request.is_private, len(resolved) > 1
    style_keys = [
        key if own is None else keys.own_style_key(job_id, private, keys.EXTENSIONS[own.content_type], place)
        for place, (_, key, own) in enumerate(resolved)
    ]
    job = Job.new(job_id=job_id, private=private, content_type=image.content_type, style_key=style_keys[0],
                  blend_keys=style_keys[1:], options=request.options)  # fmt: skip
    token, token_hash = new_token()
    for place, (_, _, own) in enumerate(resolved):
        if own is not None:
            # pinned as the photo is: the job reads its own copy of the checked version, since the
            # upload's presigned POST stays valid and could replace the upload after ACCEPTED.
            # First, so that a refusal leaves at most these copies (they expire within a day), never a job.
            store(own, job.style_keys[place], f"style.{place}" if blend else "style")
    store(image, job.input_key)
    execution = job.message()
    names = [name for name, _, _ in resolved]
    style = names[0]
    described = {"blend": blend_shares(names, request.options.style_blend)} if blend else {}
    jobs.create(
        {
            **execution,
            **described,
            "connectionId": connection_id(event),
            "tokenHash": token_hash,
            "style": style,
            # TTL: every job item goes after PRIVATE_RETENTION_DAYS, unless it becomes a Feed
            # item (a public job that succeeded: marking it so removes expiresAt)
            "expiresAt": int(time.time()) + settings.private_retention_days * 86400,
        }
    )
    logger.append_keys(jobId=job_id)
    try:
        # name = jobId: the execution of a job is found by the job's id, and Step Functions
        # refuses a second execution of that name
        states.start_execution(stateMachineArn=settings.state_machine_arn, name=job_id, input=json.dumps(execution))
    except (ClientError, BotoCoreError):
        logger.exception("the execution did not start")
        # the job must not look as if it were queued: it ends FAILED, and the client is told
        try:
            jobs.mark_failed(job_id, START_FAILED)
        except (ClientError, BotoCoreError):  # the client is told all the same; the log has both
            logger.exception("the job could not be marked FAILED either")
        metrics.add_metric(name="JobStartFailed", unit=MetricUnit.Count, value=1)
        return error(TRANSFER_STYLE, f"{START_FAILED}; please try again")
    metrics.add_dimension(name="isPrivate", value=str(private).lower())
    metrics.add_metric(name="JobSubmitted", unit=MetricUnit.Count, value=1)
    logger.info("job submitted", extra={"isPrivate": private, "style": style, "styles": len(names)})
    return message(ACCEPTED, {"jobId": job_id, "jobToken": token})


answer = route(TRANSFER_STYLE, TransferStyle, submit)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = answer(event, context)
    if json.loads(response["body"])["event"] == ERROR:
        # every ERROR answer, the failed starts included: a jump says the page and the protocol disagree
        metrics.add_metric(name="TransferRefused", unit=MetricUnit.Count, value=1)
    return response
