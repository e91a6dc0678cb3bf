"""The results queue's consumer: turns the worker's (and the state machine's) messages into
WebSocket pushes.

Three message types (JSON bodies, see docs/architecture.md): `progress` (some with a thumbnail of
the painting so far), `completed`, `failed`. SQS delivers
at least once and batches up to 10, so:

- each record succeeds or fails alone (BatchProcessor, ReportBatchItemFailures): a record whose
  delivery hit a transient error (DynamoDB, S3, API Gateway other than 410) fails and SQS
  redelivers only that one; after the queue's maxReceiveCount it goes to the dead-letter queue;
- a record that retrying cannot fix (not JSON, unknown type, unknown job, a result key that is not
  the job's) is logged and dropped;
- `completed` and `failed` are delivered once per (requestId, type): powertools Idempotency keeps
  a record in the idempotency table, which also stops two concurrent deliveries of the same
  message (the second gets IdempotencyAlreadyInProgressError, fails, and finds the first's
  completed record when SQS redelivers it);
- a delivery that died part-way (the process killed, out of time) is finished by the redelivery,
  which skips every connection recorded as reached (styleservice.deliveries): a push repeats only
  for a POST that was in flight when the process died, and the pages ignore such a repeat;
- `progress` is never retried: a copy delivered a visibility timeout later would move the bar
  backwards, and the next progress or the final message supersedes it anyway.
"""

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from pydantic import ValidationError
from stylejob.messages import RESULTS_MESSAGE, CompletedMessage, FailedMessage, ProgressMessage
from styleservice.connections import Connections
from styleservice.connections_api import ConnectionsApi
from styleservice.deliveries import Deliveries
from styleservice.jobs import DELETED, FAILED, Jobs, gallery_entry
from styleservice.protocol import COMPLETED, PROGRESS, for_job, message
from styleservice.protocol import FAILED as FAILED_EVENT
from styleservice.settings import settings
from styleservice.storage import job_image_url, s3_client

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# A delivery must not be repeated while SQS may still hold a copy of its message: the queue keeps
# messages 4 days by default, but a copy reappears within minutes (visibility timeout 180 s, five
# receives, then the dead-letter queue), so a day is ample and keeps the table small.
idempotency_config = IdempotencyConfig(event_key_jmespath="[requestId, type]", expires_after_seconds=24 * 3600)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)

# @connections POSTs of one broadcast run in parallel; botocore's default pool holds 10 connections.
BROADCAST_THREADS = 10


class Dropped(Exception):  # noqa: N818 - not an error: a message that retrying cannot fix
    """A message that is logged and deleted rather than retried."""


@functools.cache
def jobs() -> Jobs:
    return Jobs()


@functools.cache
def connections() -> Connections:
    return Connections()


@functools.cache
def connections_api(endpoint: str) -> ConnectionsApi:
    # Keyed by endpoint: the client is made once per container, for the API the template names.
    return ConnectionsApi(endpoint)


@functools.cache
def s3() -> Any:
    # SigV4 on the bucket's regional endpoint: see styleservice.storage.s3_client
    return s3_client()


@functools.cache
def deliveries() -> Deliveries:
    return Deliveries()


def post_once(connection_id: str, payload: dict[str, Any], job_id: str, retry: bool) -> bool:
    """Post a result's push, recording that it arrived; on a retry, skip a connection that has it.

    The record follows the POST: a process that dies between the two repeats that one push when
    SQS redelivers, which is the only way a connection gets a push twice."""
    event = payload["event"]
    if retry and deliveries().reached(event, job_id, connection_id):
        return True
    reached = post(connection_id, payload)
    if reached:
        deliveries().record(event, job_id, connection_id)
    return reached


def post(connection_id: str, payload: dict[str, Any]) -> bool:
    """Post to one connection; a gone one (410) is forgotten, so later broadcasts skip it."""
    if connections_api(settings.websocket_endpoint).send(connection_id, payload):
        return True
    logger.info("connection gone", extra={"connectionId": connection_id})
    connections().remove(connection_id)
    return False


def result_url(job: dict[str, Any], result_key: str) -> str:
    # a job without the flag is treated as private: never leak it
    return job_image_url(s3(), result_key, job.get("isPrivate", True))


def existing_job(job_id: str) -> dict[str, Any]:
    job = jobs().get(job_id)
    if job is None:
        raise Dropped(f"no job {job_id}")
    return job


# --- the three messages ------------------------------------------------------------------------


def on_progress(update: ProgressMessage) -> None:
    job = existing_job(update.request_id)
    if not jobs().set_progress(update.request_id, update.progress):
        logger.debug("progress after the job ended", extra={"jobId": update.request_id})
        return
    data: dict[str, Any] = {"progress": update.progress, "iteration": update.iteration, "total": update.total}
    if update.thumbnail is not None:
        data["thumbnail"] = update.thumbnail
    post(job["connectionId"], message(for_job(PROGRESS, update.request_id), data))


@idempotent_function(data_keyword_argument="body", config=idempotency_config, persistence_store=persistence)
def deliver_completed(body: dict[str, Any]) -> dict[str, Any]:
    done = CompletedMessage.model_validate(body)
    job_id = done.request_id
    job = existing_job(job_id)
    if job.get("outputKey") != done.result_key:
        raise Dropped(f"result key {done.result_key} is not job {job_id}'s output key")
    if job.get("status") == DELETED:
        # its owner took it back (DELETE_JOB) while it was painted: the result must not outlive it
        s3().delete_object(Bucket=settings.images_bucket, Key=done.result_key)
        raise Dropped(f"job {job_id} was taken back; its result is deleted")
    private = bool(job.get("isPrivate", True))
    retry = not jobs().mark_succeeded(job_id, done.result_key, public=not private)
    job = existing_job(job_id)  # as stored now: completedAt is the one LIST_IMAGES shows
    if job.get("status") == DELETED:  # taken back between the two reads
        s3().delete_object(Bucket=settings.images_bucket, Key=done.result_key)
        raise Dropped(f"job {job_id} was taken back; its result is deleted")
    if retry:
        # Already SUCCEEDED, with this very result (a job has one output key): the state machine
        # recorded the job's end first, or an earlier attempt failed or died after marking it (a
        # 500 from API Gateway, a killed process; a redelivery whose delivery finished never gets
        # here, Idempotency answers for it). Deliver it now to every connection that no earlier
        # attempt reached (styleservice.deliveries).
        logger.info("result already recorded; delivering it where it has not arrived", extra={"jobId": job_id})
    # A requester that disconnected mid-job is not an error: GET_JOB still finds the result.
    answer = message(for_job(COMPLETED, job_id), {"result": result_url(job, done.result_key)})
    reached = post_once(job["connectionId"], answer, job_id, retry)
    broadcast_to = 0
    if not private:
        broadcast_to = broadcast(
            job_id,
            retry,
            message(
                COMPLETED,
                gallery_entry(job),
            ),
        )
    metrics.add_metric(name="ResultsDelivered", unit=MetricUnit.Count, value=1)
    return {"delivered": True, "requester": reached, "broadcast": broadcast_to}


@idempotent_function(data_keyword_argument="body", config=idempotency_config, persistence_store=persistence)
def deliver_failed(body: dict[str, Any]) -> dict[str, Any]:
    failure = FailedMessage.model_validate(body)
    job_id = failure.request_id
    existing_job(job_id)
    marked = jobs().mark_failed(job_id, failure.error)
    job = existing_job(job_id)
    # The state machine's failure path sends this message and then marks the job FAILED, so an
    # already-FAILED job is the normal case, not a duplicate (Idempotency catches those). A job
    # that SUCCEEDED must not be told it failed.
    if not marked and job.get("status") != FAILED:
        logger.info("failure for a job that ended otherwise", extra={"jobId": job_id, "status": job.get("status")})
        return {"delivered": False}
    # the state machine marks the job itself, so whether this is a retry is not known: always look
    reached = post_once(
        job["connectionId"], message(for_job(FAILED_EVENT, job_id), {"error": failure.error}), job_id, True
    )
    metrics.add_metric(name="FailuresDelivered", unit=MetricUnit.Count, value=1)
    return {"delivered": True, "requester": reached}


def broadcast(job_id: str, retry: bool, payload: dict[str, Any]) -> int:
    """Post to every open connection; the number reached.

    Best effort: the requester already has the result, and a failure here (a stranger's
    connection, a throttled POST, a Scan error) must not make SQS redeliver it to them.
    """

    def one(connection_id: str) -> bool:
        try:
            return post_once(connection_id, payload, job_id, retry)
        except Exception:  # one connection's failure must not stop the others
            logger.exception("broadcast post failed", extra={"connectionId": connection_id})
            return False

    try:
        with ThreadPoolExecutor(max_workers=BROADCAST_THREADS) as pool:
            reached = sum(pool.map(one, connections().ids()))
    except Exception:  # e.g. the connections Scan failed
        logger.exception("broadcast stopped")
        return 0
    metrics.add_metric(name="BroadcastPosts", unit=MetricUnit.Count, value=reached)
    return reached


# --- the batch ---------------------------------------------------------------------------------


def record_handler(record: SQSRecord) -> None:
    try:
        body = json.loads(record.body)
        parsed = RESULTS_MESSAGE.validate_python(body)
    except (json.JSONDecodeError, ValidationError) as invalid:
        logger.warning("malformed message dropped", extra={"messageId": record.message_id, "reason": str(invalid)})
        metrics.add_metric(name="MessagesDropped", unit=MetricUnit.Count, value=1)
        return
    try:
        if isinstance(parsed, ProgressMessage):
            try:
                on_progress(parsed)
            except Dropped:
                raise
            except Exception:  # never retried: see the module docstring
                logger.exception("progress not delivered", extra={"jobId": parsed.request_id})
        elif isinstance(parsed, CompletedMessage):
            deliver_completed(body=body)
        else:
            deliver_failed(body=body)
    except Dropped as dropped:
        logger.warning("message dropped", extra={"messageId": record.message_id, "reason": str(dropped)})
        metrics.add_metric(name="MessagesDropped", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # the remaining time bounds how long an in-progress idempotency record blocks a redelivery
    idempotency_config.register_lambda_context(context)
    metrics.add_metric(name="MessagesReceived", unit=MetricUnit.Count, value=len(event.get("Records", [])))
    # A processor per invocation: it holds the batch's state, and a handler that keeps no state
    # between invocations is safe whatever calls it. Every failure is reported as a batch item
    # failure, even when all records failed (the same retry as raising, but explicit).
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
