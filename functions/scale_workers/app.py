"""The worker pool's scaler: starts GPU workers (AWS Batch jobs) when jobs wait, and forgets the
ones that are gone. Invoked three ways:

- by the state machine as each job arrives (`{"jobId": ...}`): the arriving job counts as waiting;
- by EventBridge when a worker's Batch job ends (`Batch Job State Change`, SUCCEEDED or FAILED):
  that worker is forgotten at once, and the job it held goes back on the work queue, free for the
  next worker;
- by EventBridge every minute: workers whose lease lapsed are forgotten, and the pool is brought
  back to what the waiting jobs and MinWarmWorkers want (a job that waits with no worker, after a
  worker died; MinWarmWorkers after a deploy).

The rule (workerpool.desired_workers): every busy worker, plus one per JobsPerWorker waiting
jobs (counted in the pool's table, exactly: each arriving job here, each job taken by a worker
there), at least MinWarmWorkers and at most MaxWorkers. An idle or starting worker takes the
waiting jobs itself, so none is started while one is free. Starting is a conditional increment of
the pool's count (workerpool.Registry.reserve), so two scalers running at once start at most
what the rule says between them.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from styleservice.settings import settings
from workerpool import BUSY, IDLE, STARTING, Registry, Worker, desired_workers, new_worker_id

logger = Logger()
tracer = Tracer()
metrics = Metrics()
batch = boto3.client("batch")
sqs = boto3.client("sqs")
registry = Registry(settings.workers_table, boto3.client("dynamodb"))
jobs_table = boto3.resource("dynamodb").Table(settings.jobs_table)

BATCH_STATE_CHANGE = "Batch Job State Change"
NO_CAPACITY = "no GPU machine could be had in time (the service is at its GPU capacity or quota)"
FAILED_TO_START = "a GPU worker failed as it started"
NOT_SUBMITTED = "the service could not ask for a GPU worker"


def messages_queued() -> int:
    """Every message the work queue holds, waiting or taken (an upper bound of the jobs waiting)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=settings.work_queue_url, AttributeNames=names)["Attributes"]
    return sum(int(found[name]) for name in names)


def forget(worker: Worker, why: str, lease_lapsed: bool) -> bool:
    """Remove a gone worker from the pool; the job it held is visible on the work queue again at
    once (another worker retries it: the job's attempts bound how often). False if it was not
    gone after all (its lease was renewed meanwhile) or another scaler forgot it first."""
    forgotten = registry.reap(worker) if lease_lapsed else registry.release(worker.worker_id)
    if not forgotten:
        return False
    logger.info("worker forgotten", extra={"workerId": worker.worker_id, "status": worker.status, "why": why})
    metrics.add_metric(name="WorkersReaped", unit=MetricUnit.Count, value=1)
    if worker.receipt_handle:
        registry.arrived()  # its job waits again
        if worker.job_id:
            release_claim(worker)
        try:
            sqs.change_message_visibility(
                QueueUrl=settings.work_queue_url, ReceiptHandle=worker.receipt_handle, VisibilityTimeout=0
            )
        except ClientError:  # the handle expired: the message is visible already
            logger.info("job already back on the queue", extra={"jobId": worker.job_id})
    if worker.status == STARTING:
        registry.record_start_failure(why)
        metrics.add_metric(name="WorkerStartFailed", unit=MetricUnit.Count, value=1)
        if lease_lapsed and worker.batch_job_id:  # it may still come up: it must not, uncounted
            try:
                batch.terminate_job(jobId=worker.batch_job_id, reason=f"the worker pool gave up on it: {why}")
            except ClientError:
                logger.exception("a worker that never came up could not be terminated")
    return True


def release_claim(worker: Worker) -> None:
    """The job a gone worker held is free for the next worker at once (its attempt stays counted)."""
    try:
        jobs_table.update_item(
            Key={"jobId": worker.job_id},
            UpdateExpression="REMOVE workerId, claimedUntil",
            ConditionExpression="workerId = :gone",
            ExpressionAttributeValues={":gone": worker.worker_id},
        )
    except ClientError as failure:  # it ended, or another worker took it meanwhile: nothing to free
        if failure.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def start_failure(worker: Worker) -> str:
    """Why a STARTING worker's lease lapsed, in the user's words (Batch's own in the log)."""
    if worker.batch_job_id:
        try:
            described = batch.describe_jobs(jobs=[worker.batch_job_id])["jobs"]
        except ClientError:
            described = []
        if described:
            job = described[0]
            batch_said = {"batchStatus": job.get("status"), "why": job.get("statusReason")}
            logger.info("worker did not come up", extra=batch_said)
            if job.get("status") in ("SUBMITTED", "PENDING", "RUNNABLE"):
                return NO_CAPACITY
    return FAILED_TO_START


def on_batch_job_end(detail: dict[str, Any], now: float) -> int:
    """A worker's Batch job ended: forget it now rather than when its lease lapses."""
    batch_job_id = detail.get("jobId")
    for worker in registry.state().workers:
        if worker.batch_job_id == batch_job_id:
            # a job that never ran a container was cancelled while it waited for an instance (the
            # job queue's JobStateTimeLimitActions), or could not be placed at all
            never_ran = not detail.get("attempts")
            reason = (NO_CAPACITY if never_ran else FAILED_TO_START) if worker.status == STARTING else "its job ended"
            batch_said = {"batchStatus": detail.get("status"), "why": detail.get("statusReason")}
            logger.info("worker's Batch job ended", extra=batch_said)
            return int(forget(worker, reason, lease_lapsed=False))
    return 0


def start_worker(desired: int) -> bool:
    """Reserve a place for one more worker and submit its Batch job; False when the pool already
    has `desired` (a concurrent scaler filled it) or the job could not be submitted."""
    worker_id = new_worker_id()
    if not registry.reserve(worker_id, desired, settings.worker_start_seconds):
        return False
    try:
        submitted = batch.submit_job(
            jobName=f"worker-{worker_id}",
            jobQueue=settings.worker_job_queue,
            jobDefinition=settings.worker_job_definition,
            containerOverrides={"environment": [{"name": "WORKER_ID", "value": worker_id}]},
        )
    except (ClientError, BotoCoreError):
        logger.exception("the worker's Batch job was not submitted")
        registry.release(worker_id)
        registry.record_start_failure(NOT_SUBMITTED)
        metrics.add_metric(name="WorkerStartFailed", unit=MetricUnit.Count, value=1)
        return False
    registry.submitted(worker_id, submitted["jobId"])
    logger.info("worker started", extra={"workerId": worker_id, "batchJobId": submitted["jobId"]})
    metrics.add_metric(name="WorkersStarted", unit=MetricUnit.Count, value=1)
    return True


def scale(arriving: bool, now: float) -> dict[str, Any]:
    """Count an arriving job, forget the workers whose lease lapsed, then start what the rule wants."""
    if arriving:
        registry.arrived()
    else:  # a look now and then: what left the queue unseen is no longer waiting
        registry.at_most_waiting(messages_queued())
    state = registry.state()
    reaped = 0
    for worker in state.workers:
        if worker.lapsed(now):
            why = start_failure(worker) if worker.status == STARTING else "its lease lapsed"
            reaped += forget(worker, why, lease_lapsed=True)
    if reaped:
        state = registry.state()
    counts = {status: state.count(status, now) for status in (BUSY, IDLE, STARTING)}
    waiting = state.waiting
    desired = desired_workers(
        busy=counts[BUSY],
        waiting=waiting,
        jobs_per_worker=settings.jobs_per_worker,
        min_warm=settings.min_warm_workers,
        max_workers=settings.max_workers,
    )
    started = 0
    for _ in range(desired - sum(counts.values())):
        if not start_worker(desired):
            break
        started += 1
    summary = {"workers": counts, "waiting": waiting, "desired": desired, "started": started, "reaped": reaped}
    logger.info("pool scaled", extra=summary)
    # the pool's size and its backlog at every look, for a dashboard of how the pool follows demand
    metrics.add_metric(name="PoolWorkers", unit=MetricUnit.Count, value=sum(counts.values()) + started)
    metrics.add_metric(name="JobsWaiting", unit=MetricUnit.Count, value=waiting)
    return summary


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = time.time()
    reaped = 0
    if event.get("detail-type") == BATCH_STATE_CHANGE:
        reaped = on_batch_job_end(event.get("detail") or {}, now)
    summary = scale(arriving=bool(event.get("jobId")), now=now)
    summary["reaped"] += reaped
    return summary
