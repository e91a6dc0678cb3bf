"""The moto fixes, each without the other first (moto's own behaviour shown wrong, the fix's right),
then together on the template's state machine."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import moto as moto_package
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.batch.models import Job
from stylelocal import moto_fixes
from stylelocal.aws import FAKE_CREDENTIALS, REGION, LocalAws
from stylelocal.batch import EXITED

from .conftest import history, records, wait_for_execution


def batch_jobs(aws: LocalAws) -> list[dict[str, Any]]:
    batch = aws.client("batch")
    summaries = [j for status in ("SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED", "FAILED")
                 for j in batch.list_jobs(jobQueue="local-gpu", jobStatus=status)["jobSummaryList"]]  # fmt: skip
    return batch.describe_jobs(jobs=[j["jobId"] for j in summaries])["jobs"] if summaries else []


def wait_for_job(aws: LocalAws, job_id: str, timeout: float = 30) -> dict[str, Any]:
    batch = aws.client("batch")
    deadline = time.monotonic() + timeout
    while (job := batch.describe_jobs(jobs=[job_id])["jobs"][0])["status"] not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, f"the job is still {job['status']}"
        time.sleep(0.05)
    return job


def event_of(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [e for e in events if e["type"] == kind]
    return next(v for k, v in found.items() if k.endswith("EventDetails"))


# --- the version pin ---------------------------------------------------------------------------


def test_the_fixes_refuse_another_moto_version_before_patching_anything(fixes, monkeypatch):
    moto_fixes.uninstall()
    monkeypatch.setattr(moto_package, "__version__", "5.2.6")
    with pytest.raises(moto_fixes.MotoVersionError, match=r"moto 5\.2\.5.*moto 5\.2\.6 is installed"):
        moto_fixes.install()
    assert moto_fixes.installed() == set()
    assert "run" not in vars(Job) or vars(Job)["run"].__module__ == "moto.batch.models"


def test_installing_is_idempotent_and_uninstalling_restores_moto_exactly(fixes):
    moto_fixes.uninstall()
    originals = {name: vars(Job).get(name) for name in ("run", "describe", "describe_short", "terminate", "status")}
    assert originals["status"] is None  # moto's Job inherits status from ManagedState
    assert moto_fixes.install() == [
        "batch_runner",
        "batch_threads",
        "lambda_invoker",
        "task_tokens",
        "parallel_errors",
        "s3_presigned",
        "s3_missing_keys",
        "s3_copy_if_match",
    ]
    assert moto_fixes.install() == []
    assert vars(Job)["run"] is not originals["run"]
    moto_fixes.uninstall()
    assert {name: vars(Job).get(name) for name in originals} == originals
    with pytest.raises(KeyError, match="no moto fix called 'nope'"):
        moto_fixes.install(["nope"])


# --- batch_runner --------------------------------------------------------------------------------


def submit(aws: LocalAws, name: str = "direct", **overrides: Any) -> str:
    return aws.client("batch").submit_job(
        jobName=name, jobQueue="local-gpu", jobDefinition="local-worker", containerOverrides=overrides
    )["jobId"]


def test_without_the_runner_fix_moto_never_runs_the_job(aws, fixes, batch_for, tmp_path):
    moto_fixes.uninstall(["batch_runner"])
    batch_for("--record", str(tmp_path))

    job = wait_for_job(aws, submit(aws))

    assert job["status"] == "FAILED"
    assert records(tmp_path) == []  # the worker never ran
    assert "exitCode" not in job["container"]  # no exit code: nothing ran
    assert all("exitCode" not in attempt["container"] for attempt in job["attempts"])


def test_with_the_runner_fix_the_runner_runs_the_job_and_describe_jobs_reports_it(aws, fixes, batch_for, tmp_path):
    batch = batch_for("--record", str(tmp_path), "--sleep", "1")
    job_id = submit(aws, environment=[{"name": "JOB_JSON", "value": "{}"}])

    seen = set()
    job = aws.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]
    while job["status"] not in ("SUCCEEDED", "FAILED"):
        seen.add(job["status"])
        time.sleep(0.05)
        job = aws.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]

    assert "RUNNING" in seen
    assert seen <= {"SUBMITTED", "RUNNABLE", "STARTING", "RUNNING"}
    assert job["status"] == "SUCCEEDED"
    assert job["statusReason"] == EXITED
    assert job["container"]["exitCode"] == 0
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert job["stoppedAt"] - job["startedAt"] >= 1000
    [attempt] = job["attempts"]
    assert attempt["container"]["exitCode"] == 0
    assert (attempt["startedAt"], attempt["stoppedAt"]) == (job["startedAt"], job["stoppedAt"])
    [record] = records(tmp_path)
    assert record["environ"]["JOB_JSON"] == "{}"
    assert batch.status(job_id) == "SUCCEEDED"
    listed = aws.client("batch").list_jobs(jobQueue="local-gpu", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [j["jobId"] for j in listed] == [job_id]  # list_jobs filters on the runner's status too


def test_a_failed_job_reports_its_exit_code(aws, batch_for):
    batch_for("--exit", "3")
    job = wait_for_job(aws, submit(aws))
    assert job["status"] == "FAILED"
    assert job["container"]["exitCode"] == 3


def test_with_no_runner_a_job_fails_at_once_saying_why(aws):
    job = wait_for_job(aws, submit(aws), timeout=5)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == moto_fixes.NO_RUNNER_REASON


def test_terminate_job_reaches_the_runner(aws, batch_for, tmp_path):
    batch = batch_for("--record", str(tmp_path), "--sleep", "60")
    job_id = submit(aws)
    batch_client = aws.client("batch")
    deadline = time.monotonic() + 10
    while batch.status(job_id) != "RUNNING" or not records(tmp_path):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    batch_client.terminate_job(jobId=job_id, reason="Stopped by the test")

    job = wait_for_job(aws, job_id, timeout=15)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Stopped by the test"
    assert job["container"]["exitCode"] == 143  # SIGTERM, as Docker reports it


def test_describing_a_job_does_not_grow_its_environment(aws, fixes):
    moto_fixes.uninstall(["batch_runner"])
    job_id = submit(aws, environment=[{"name": "JOB_JSON", "value": "{}"}])
    batch = aws.client("batch")
    unpatched = [len(batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]["environment"]) for _ in range(3)]
    assert unpatched[2] > unpatched[1] > unpatched[0]  # moto appends the definition's variables each time

    moto_fixes.install(["batch_runner"])
    patched = [len(batch.describe_jobs(jobs=[job_id])["jobs"][0]["container"]["environment"]) for _ in range(3)]
    assert patched[0] == patched[1] == patched[2]


# --- batch_threads -------------------------------------------------------------------------------


def describe_while_a_job_lands(aws: LocalAws) -> tuple[Exception | None, threading.Event]:
    """DescribeJobs (one attempt: no retries to hide a 500) during which, while moto walks the
    table, another thread submits a job, waited for up to half a second. Returns DescribeJobs'
    error (None: it answered) and the event set once the submission is done."""
    batch = boto3.client(
        "batch",
        region_name=REGION,
        endpoint_url=aws.endpoint,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        **{name.lower(): value for name, value in FAKE_CREDENTIALS.items()},
    )
    started, landed = threading.Event(), threading.Event()
    describe = vars(Job)["describe"]

    def describe_as_a_job_lands(job: Any) -> Any:
        if not started.is_set():  # the first job described: moto is walking the table
            started.set()
            threading.Thread(target=lambda: (submit(aws, name="landing"), landed.set())).start()
            landed.wait(0.5)  # with the fix it cannot land before DescribeJobs is done
        return describe(job)

    Job.describe = describe_as_a_job_lands  # type: ignore[method-assign]
    try:
        batch.describe_jobs(jobs=[submit(aws, name="first"), submit(aws, name="second")])
        return None, landed
    except ClientError as failure:
        return failure, landed
    finally:
        Job.describe = describe  # type: ignore[method-assign]


def test_without_the_threads_fix_a_job_submitted_mid_describe_breaks_it_and_with_it_waits(aws, fixes):
    moto_fixes.uninstall(["batch_threads"])
    failure, landed = describe_while_a_job_lands(aws)
    assert isinstance(failure, ClientError)  # moto's 500: dictionary changed size during iteration
    assert failure.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert landed.wait(10)

    moto_fixes.install(["batch_threads"])
    failure, landed = describe_while_a_job_lands(aws)
    assert failure is None
    assert landed.wait(10)  # the submission waited for the table, then went through
    names = [job["jobName"] for job in batch_jobs(aws)]
    assert names.count("landing") == 2  # one from each half
    assert names.count("first") == names.count("second") == 2


# --- s3_copy_if_match ---------------------------------------------------------------------------


def test_a_copy_pinned_to_an_etag_is_refused_once_the_source_changed(aws, fixes):
    s3, bucket = aws.client("s3"), aws.refs["ImagesBucket"]
    checked = s3.put_object(Bucket=bucket, Key="uploads/a.png", Body=b"the checked bytes")["ETag"]
    s3.put_object(Bucket=bucket, Key="uploads/a.png", Body=b"<html>swapped</html>")

    source = {"Bucket": bucket, "Key": "uploads/a.png"}

    def copy() -> Any:
        return s3.copy_object(Bucket=bucket, Key="public/style/a.png", CopySource=source, CopySourceIfMatch=checked)

    moto_fixes.uninstall(["s3_copy_if_match"])
    copy()  # moto alone copies whatever the source holds now
    assert s3.get_object(Bucket=bucket, Key="public/style/a.png")["Body"].read() == b"<html>swapped</html>"

    moto_fixes.install(["s3_copy_if_match"])
    with pytest.raises(ClientError) as refused:
        copy()
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    current = s3.head_object(Bucket=bucket, Key="uploads/a.png")["ETag"]
    s3.copy_object(Bucket=bucket, Key="public/style/b.png", CopySource=source, CopySourceIfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="public/style/b.png")["Body"].read() == b"<html>swapped</html>"


# --- task_tokens and parallel_errors --------------------------------------------------------------


def token_machine(aws: LocalAws, heartbeat: int = 30) -> str:
    """The pool's shape in small: a Parallel whose one branch waits for a task token sent on the
    work queue (with a heartbeat), caught as the template catches it."""
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": aws.refs["WorkQueue"], "MessageBody": {"taskToken.$": "$$.Task.Token"}},
        "HeartbeatSeconds": heartbeat,
        "End": True,
    }
    definition = {
        "StartAt": "Run",
        "States": {
            "Run": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "Wait", "States": {"Wait": wait}}],
                "Catch": [
                    {"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.failure", "Next": "NoHeartbeat"},
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Other"},
                ],
                "End": True,
            },
            "NoHeartbeat": {"Type": "Pass", "End": True},
            "Other": {"Type": "Pass", "End": True},
        },
    }
    return aws.client("stepfunctions").create_state_machine(
        name=f"Tokens{time.monotonic_ns()}", definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/local",
    )["stateMachineArn"]  # fmt: skip


def start_tokens(aws: LocalAws, heartbeat: int = 30) -> tuple[str, str]:
    """An execution of token_machine, and its token as a worker receives it."""
    sfn, sqs = aws.client("stepfunctions"), aws.client("sqs")
    arn = sfn.start_execution(stateMachineArn=token_machine(aws, heartbeat), input="{}")["executionArn"]
    deadline = time.monotonic() + 10
    while not (received := sqs.receive_message(QueueUrl=aws.refs["WorkQueue"]).get("Messages")):
        assert time.monotonic() < deadline, "no token was sent"
    return arn, json.loads(received[0]["Body"])["taskToken"]


def test_without_the_token_fix_a_heartbeat_before_moto_arms_its_clock_is_refused_and_with_it_accepted(aws, fixes):
    """The race a warm worker meets: its heartbeat can reach moto between the task's message being
    sent and the task's heartbeat clock being armed. Shown on the callback itself, at that moment."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    moto_fixes.uninstall(["task_tokens"])
    assert CallbackEndpoint("token").notify_heartbeat() is False  # moto then answers InvalidToken
    moto_fixes.install(["task_tokens"])
    early = CallbackEndpoint("token")
    assert early.notify_heartbeat() is True
    armed = early.setup_heartbeat_endpoint(heartbeat_seconds=1)
    assert early.notify_heartbeat() is True
    assert armed.clear_and_wait() is True  # the heartbeat reached the armed clock
    sfn = aws.client("stepfunctions")
    _, token = start_tokens(aws)
    sfn.send_task_heartbeat(taskToken=token)  # and through the API


def test_without_the_token_fix_a_stopped_executions_token_still_works_and_with_it_is_refused(aws, fixes):
    sfn = aws.client("stepfunctions")
    moto_fixes.uninstall(["task_tokens"])
    arn, token = start_tokens(aws)
    sfn.stop_execution(executionArn=arn, cause="the job was cancelled")
    sfn.send_task_heartbeat(taskToken=token)  # accepted: its worker would paint on

    moto_fixes.install(["task_tokens"])
    arn, token = start_tokens(aws)
    sfn.stop_execution(executionArn=arn, cause="the job was cancelled")
    with pytest.raises(ClientError, match="InvalidToken"):
        sfn.send_task_heartbeat(taskToken=token)  # as in AWS: the job is no longer its worker's


def test_without_the_token_fix_a_failures_cause_is_lost_and_with_it_kept(aws, fixes):
    sfn = aws.client("stepfunctions")
    causes = []
    for installed in (False, True):
        (moto_fixes.install if installed else moto_fixes.uninstall)(["task_tokens"])
        arn, token = start_tokens(aws)
        sfn.send_task_failure(taskToken=token, error="StyleTransfer.BadInput", cause="the photo is too small")
        execution = wait_for_execution(aws, arn)
        failure = json.loads(execution["output"])["failure"]
        assert failure["Error"] == "StyleTransfer.BadInput"
        causes.append(failure.get("Cause"))
    assert not causes[0]  # moto dropped it
    assert causes[1] == "the photo is too small"


def test_without_the_fixes_a_lapsed_heartbeat_is_a_crash_or_a_timeout_and_with_them_a_heartbeat_timeout(aws, fixes):
    moto_fixes.uninstall(["task_tokens", "parallel_errors"])
    arn, _ = start_tokens(aws, heartbeat=1)
    crashed = wait_for_execution(aws, arn, 30)
    assert crashed["status"] == "FAILED"  # the Parallel could not re-raise States.Timeout: no Catch ran
    assert not any(e["type"] == "PassStateEntered" for e in history(aws, arn))

    moto_fixes.install(["parallel_errors"])
    arn, _ = start_tokens(aws, heartbeat=1)
    caught = wait_for_execution(aws, arn, 30)
    assert json.loads(caught["output"])["failure"]["Error"] == "States.Timeout"  # moto's name for every timeout

    moto_fixes.install(["task_tokens"])
    arn, _ = start_tokens(aws, heartbeat=1)
    caught = wait_for_execution(aws, arn, 30)
    assert caught["status"] == "SUCCEEDED"
    assert json.loads(caught["output"])["failure"]["Error"] == "States.HeartbeatTimeout"
    entered = [e["stateEnteredEventDetails"]["name"] for e in history(aws, arn) if e["type"] == "PassStateEntered"]
    assert entered == ["NoHeartbeat"]
