"""A job's execution ended: its place among the jobs in flight is given back (styleservice.limits.
Admissions), whatever way it ended. Invoked by EventBridge with Step Functions' "Step Functions
Execution Status Change" event for the transfer state machine (SUCCEEDED, FAILED, TIMED_OUT,
ABORTED); the execution's name is the job's id.

An execution that ends by itself has recorded the job's end already (its last states). One that
was stopped (an operator's StopExecution) or timed out did not: the job is marked FAILED here, with
a reason the user can read, and the requester is told (a `failed` message for the notifier), so a
job always ends. A repeated event changes nothing: the place is given back once (its ticket), and
a job already ended stays as it is.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from stylejob import keys
from stylejob.messages import FailedMessage
from styleservice.jobs import Jobs
from styleservice.limits import Admissions
from styleservice.settings import settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
admissions = Admissions()
jobs = Jobs()
sqs = boto3.client("sqs")

STOPPED = "the style transfer was stopped before it finished; please try again"
UNFINISHED = ("ABORTED", "TIMED_OUT")  # the execution's own end-recording states did not run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail") or {}
    job_id, status = str(detail.get("name", "")), str(detail.get("status", ""))
    if not keys.JOB_ID.match(job_id):
        logger.warning("not a job's execution", extra={"execution": job_id[:100]})
        return {"released": False, "failed": False}
    logger.append_keys(jobId=job_id)
    released = admissions.release(job_id)
    metrics.add_metric(name="JobsEnded", unit=MetricUnit.Count, value=1)
    failed = False
    if status in UNFINISHED and jobs.mark_failed(job_id, STOPPED):
        failed = True
        sqs.send_message(
            QueueUrl=settings.results_queue_url, MessageBody=FailedMessage(request_id=job_id, error=STOPPED).body()
        )
        metrics.add_metric(name="JobsStopped", unit=MetricUnit.Count, value=1)
    logger.info("job ended", extra={"status": status, "released": released, "markedFailed": failed})
    return {"released": released, "failed": failed}
