"""GET_JOB: a job's state for whoever holds its token (the page that submitted it, after a
reconnect or a reload, and "Your paintings" opening one of them later). A wrong token, an unknown
job and one its owner took back (DELETE_JOB) get the same answer, so the answer says nothing about
which job ids exist. A private job's images come as presigned GETs made afresh for each answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice.jobs import DELETED, FAILED, SUCCEEDED, Jobs
from styleservice.protocol import GET_JOB, JOB, GetJob, ProtocolError, message
from styleservice.routes import route
from styleservice.storage import job_image_url, s3_client

logger = Logger()
tracer = Tracer()
jobs = Jobs()
s3 = s3_client()

NOT_FOUND = "no job with that jobId and jobToken"


def status(request: GetJob, event: dict[str, Any]) -> dict[str, Any]:
    item = jobs.get_with_token(request.job_id, request.job_token)
    if item is None or item["status"] == DELETED:  # the same answer whatever the reason
        raise ProtocolError(NOT_FOUND)
    private = item.get("isPrivate", True)  # a job without the flag is treated as private
    data: dict[str, Any] = {
        "jobId": item["jobId"],
        "status": item["status"],
        "progress": item.get("progress", 0),
        "style": item.get("style"),
        "isPrivate": private,
        "createdAt": item.get("createdAt"),
        "input": job_image_url(s3, item["inputKey"], private),
    }
    if item.get("blend"):
        data["blend"] = item["blend"]
    if preview_key := item.get("previewKey"):
        data["preview"] = job_image_url(s3, preview_key, private)
    if item["status"] == SUCCEEDED:
        key = item["resultKey"]
        data["result"] = job_image_url(s3, key, private)  # private: for the token's holder only
        data["completedAt"] = item.get("completedAt")
    elif item["status"] == FAILED:
        data["error"] = item.get("error", "the job failed")
    return message(JOB, data)


answer = route(GET_JOB, GetJob, status)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
