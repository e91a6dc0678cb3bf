"""REQUEST_UPLOAD: a presigned POST for one image of the declared type and at most the declared
size, under a fresh uploads/ key. Images over the WebSocket message limit (128 KB) come this way;
the client then names the key in TRANSFER_STYLE."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from stylejob import keys
from styleservice.protocol import REQUEST_UPLOAD, UPLOAD_READY, ProtocolError, RequestUpload, message
from styleservice.routes import route
from styleservice.settings import settings
from styleservice.storage import s3_client

logger = Logger()
tracer = Tracer()
s3 = s3_client()


def presign(request: RequestUpload, event: dict[str, Any]) -> dict[str, Any]:
    limit = settings.max_upload_bytes
    if request.size > limit:
        raise ProtocolError(f"size: {request.size} bytes is over the upload limit of {limit} bytes")
    key = keys.upload_key(request.content_type)
    seconds = settings.presigned_url_seconds
    # S3 itself enforces the policy: this key only, this Content-Type only, 1..size bytes
    post = s3.generate_presigned_post(
        Bucket=settings.images_bucket,
        Key=key,
        Fields={"Content-Type": request.content_type},
        Conditions=[{"Content-Type": request.content_type}, ["content-length-range", 1, request.size]],
        ExpiresIn=seconds,
    )
    logger.info("upload presigned", extra={"key": key, "size": request.size})
    return message(UPLOAD_READY, {"key": key, "url": post["url"], "fields": post["fields"], "expiresIn": seconds})


answer = route(REQUEST_UPLOAD, RequestUpload, presign)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
