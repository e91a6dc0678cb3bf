"""DELETE_JOB: the holder of a job's token takes it back. Its painting is cancelled if it still
runs, its stored images go (the photo, its own style copies, the instant preview, the result),
it leaves the Feed, and if it was public every open connection is told IMAGE_REMOVED {jobId}, so
that an open Feed takes the picture away at once. A wrong token and an unknown job get the same
ERROR as GET_JOB's, after the same work; the holder of the token may send it again, and gets the
same answer (what a page needs when the first answer was lost with its connection).

The order matters. The execution is stopped first: once Step Functions has stopped it, none of
its states runs again, so none can record the job's end over the deletion (its end-recording
states are exactly what a stopped execution never reaches, which is why the job's end is recorded
here). Its worker finds out at its next heartbeat (the task token is no longer valid) and stops
painting. Then the job becomes a DELETED tombstone (styleservice.jobs: kept a day, out of the Feed
index), and what arrives for it later is removed rather than recorded: a result the worker had
already stored (functions/notify deletes it), a preview being made (functions/preview). Then the
objects go."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from stylejob import keys
from styleservice.connections import Connections
from styleservice.connections_api import ConnectionsApi, broadcast
from styleservice.jobs import DELETED, RUNNING, SUBMITTED, Jobs
from styleservice.protocol import DELETE_JOB, IMAGE_REMOVED, JOB_DELETED, DeleteJob, ProtocolError, message
from styleservice.routes import route
from styleservice.settings import settings
from styleservice.storage import s3_client

logger = Logger()
tracer = Tracer()
metrics = Metrics()
jobs = Jobs()
s3 = s3_client()
states = boto3.client("stepfunctions")

NOT_FOUND = "no job with that jobId and jobToken"  # GET_JOB's words: the two never tell jobs apart
FAILED = "the job could not be deleted; please try again"


def execution_arn(item: dict[str, Any]) -> str:
    """The job's execution: recorded on the item by the state machine's first state, else named
    after the job in the stack's state machine (TRANSFER_STYLE starts it so)."""
    if arn := item.get("executionArn"):
        return str(arn)
    machine = settings.state_machine_arn
    return machine.replace(":stateMachine:", ":execution:", 1) + f":{item['jobId']}"


def cancel(item: dict[str, Any]) -> bool:
    """Stops a job's execution that may still run; whether one was stopped."""
    try:
        states.stop_execution(
            executionArn=execution_arn(item), error="StyleTransfer.Deleted", cause="its owner took the job back"
        )
    except states.exceptions.ExecutionDoesNotExist:  # never started (TRANSFER_STYLE failed to), or gone
        return False
    return True


def objects(item: dict[str, Any]) -> list[str]:
    """Every key of the job's own images, recorded or not: a preview or a result may be stored
    after the item was read, and deleting a key that does not exist costs nothing."""
    job_id, private = item["jobId"], bool(item.get("isPrivate", True))
    found = {item["inputKey"]} if keys.job_object(str(item.get("inputKey", ""))) else set()
    found |= {keys.preview_key(job_id, private), keys.output_key(job_id, private)}
    found |= set(keys.own_style_keys(job_id, private))
    # only the job's own objects, whatever the item says: never the catalogue, never another job's
    return sorted(key for key in found if (own := keys.job_object(key) or keys.own_style(key)) and job_id in own)


def remove(request: DeleteJob, event: dict[str, Any]) -> dict[str, Any]:
    item = jobs.get_with_token(request.job_id, request.job_token)
    if item is None:  # an unknown job or a wrong token: the same answer after the same work
        raise ProtocolError(NOT_FOUND)
    logger.append_keys(jobId=request.job_id)
    try:
        if item["status"] in (SUBMITTED, RUNNING):
            stopped = cancel(item)
            logger.info("painting cancelled" if stopped else "no execution to cancel")
        before = jobs.mark_deleted(request.job_id) or item
        keys_gone = objects(item)
        for start in range(0, len(keys_gone), 1000):  # DeleteObjects takes 1000 keys at a time
            s3.delete_objects(
                Bucket=settings.images_bucket,
                Delete={"Objects": [{"Key": key} for key in keys_gone[start : start + 1000]], "Quiet": True},
            )
    except (ClientError, BotoCoreError):
        logger.exception("the job could not be deleted")
        raise ProtocolError(FAILED) from None
    reached = 0
    if before.get("isPrivate") is False and before.get("status") != DELETED:
        # an open Feed takes the picture away; best effort: the job is gone whatever a post does
        try:
            reached = broadcast(ConnectionsApi(), Connections(), message(IMAGE_REMOVED, {"jobId": request.job_id}))
        except Exception:
            logger.exception("IMAGE_REMOVED not broadcast")
    metrics.add_metric(name="JobsDeleted", unit=MetricUnit.Count, value=1)
    logger.info("job deleted", extra={"was": before.get("status"), "objects": len(keys_gone), "told": reached})
    return message(JOB_DELETED, {"jobId": request.job_id})


answer = route(DELETE_JOB, DeleteJob, remove)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
