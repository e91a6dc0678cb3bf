"""The instant preview: the state machine's first step after recording the job, before the GPU
job. A feed-forward network repaints the photo in well under a second (styleservice.preview); the
result goes beside the job's images, in the job's own area (public/ or private/preview/<jobId>.jpg),
onto the job item (previewKey, for GET_JOB) and to the requesting connection only, as
TRANSFER_STYLE_PREVIEW::<jobId> {preview}: a private job's preview as a presigned GET, never a
public URL, and no job's preview is broadcast or listed.

A preview is a nicety, and a job never fails for want of one. A photo or style image that the
network cannot use (not readable, thinner than it accepts) is skipped with a reason in the answer
and the log (the worker will tell the user what is wrong with it); anything else (S3, DynamoDB, a
bug) is raised, logged with its traceback and caught by the state machine, which goes on to the
painting itself."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from stylejob import keys
from styleservice import preview
from styleservice.connections_api import ConnectionsApi
from styleservice.jobs import DELETED, Jobs
from styleservice.protocol import PREVIEW, for_job, message
from styleservice.settings import settings
from styleservice.storage import job_image_url, s3_client

logger = Logger()
tracer = Tracer()
metrics = Metrics()
s3 = s3_client()
jobs = Jobs()
preview.warm()  # in the init phase: the first job's preview pays nothing for loading the network

MAX_SOURCE_BYTES = 25 * 1024 * 1024  # uploads are at most MAX_UPLOAD_BYTES (20 MiB by default)


class NoPreviewError(Exception):
    """This job's images make no preview; the job goes on without one."""


def read(key: str) -> bytes:
    found = s3.get_object(Bucket=settings.images_bucket, Key=key)
    if found["ContentLength"] > MAX_SOURCE_BYTES:
        raise NoPreviewError(f"{key} is {found['ContentLength']} bytes, too large for a preview")
    return found["Body"].read()


def make(job_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    if not keys.JOB_ID.match(job_id):
        raise ValueError("the execution input has no valid jobId")
    # The job item, not the execution input, says where the images are and who asked.
    job = jobs.get(job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    if job.get("status") == DELETED:  # its owner took it back before its preview was made
        return {"previewKey": None, "pushed": False}
    private = bool(job.get("isPrivate", True))  # a job without the flag is treated as private
    options = job.get("options") or {}
    try:
        image = preview.make_preview(
            read(job["inputKey"]),
            # a blend's style images, in order; their vectors are mixed by the job's weights
            [read(key) for key in [job["styleKey"], *job.get("blendKeys", [])]],
            size=options.get("size"),
            strength=float(options.get("strength", 0.5)),
            preserve_colors=bool(options.get("preserveColors", False)),
            blend=options.get("styleBlend"),
        )
    except preview.PreviewError as unusable:
        raise NoPreviewError(str(unusable)) from None
    key = keys.preview_key(job_id, private)
    s3.put_object(
        Bucket=settings.images_bucket,
        Key=key,
        Body=preview.jpeg(image),
        ContentType="image/jpeg",
        CacheControl="public, max-age=31536000, immutable",  # one key per job: never changes
    )
    if not jobs.set_preview(job_id, key):
        if (now := jobs.get(job_id)) is None or now.get("status") == DELETED:
            # taken back (DELETE_JOB) while the preview was made: it must not outlive the job
            s3.delete_object(Bucket=settings.images_bucket, Key=key)
            return {"previewKey": None, "pushed": False}
        # Counted: a rising count means the worker now beats the preview and it could be dropped.
        metrics.add_metric(name="PreviewTooLate", unit=MetricUnit.Count, value=1)
        logger.info("the job ended before its preview was ready", extra={"jobId": job_id})
        return {"previewKey": key, "pushed": False}
    url = job_image_url(s3, key, private)
    pushed = ConnectionsApi().send(job["connectionId"], message(for_job(PREVIEW, job_id), {"preview": url}))
    seconds = round(time.perf_counter() - started, 3)
    metrics.add_metric(name="PreviewSeconds", unit=MetricUnit.Seconds, value=seconds)
    logger.info("preview made", extra={"jobId": job_id, "seconds": seconds, "size": list(image.size)})
    return {"previewKey": key, "pushed": pushed}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job_id = str(event.get("jobId", ""))
    logger.append_keys(jobId=job_id)
    try:
        return make(job_id)
    except NoPreviewError as reason:
        metrics.add_metric(name="PreviewSkipped", unit=MetricUnit.Count, value=1)
        logger.warning("no preview", extra={"reason": str(reason)})
        return {"previewKey": None, "pushed": False, "reason": str(reason)}
    except Exception:
        metrics.add_metric(name="PreviewFailed", unit=MetricUnit.Count, value=1)
        logger.exception("no preview")
        raise
