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

from .conftest import history, job_item, messages, new_job, records, run_execution, wait_for_execution

# A Batch task with every kind of parameter: PascalCase structures, a list of {Name, Value}, a map
# whose keys are data (Parameters, Tags), numbers.
TASK_PARAMETERS = {
    "JobName": "fixture-job",
    "JobQueue": "local-gpu",
    "JobDefinition": "local-worker",
    "Parameters": {"Size": "64"},
    "ContainerOverrides": {
        "Environment": [{"Name": "JOB_JSON", "Value.$": "States.JsonToString($)"}, {"Name": "EXTRA", "Value": "1"}],
        "Command": ["python", "-m", "stylize_worker", "Ref::Size"],
        "ResourceRequirements": [{"Type": "VCPU", "Value": "2"}],
    },
    "RetryStrategy": {"Attempts": 2},
    "Timeout": {"AttemptDurationSeconds": 120},
    "Tags": {"Purpose": "test"},
}


def batch_machine(aws: LocalAws) -> str:
    """A state machine with one batch:submitJob.sync task; its ResultSelector reads AWS's names."""
    definition = {
        "StartAt": "Run",
        "States": {
            "Run": {
                "Type": "Task",
                "Resource": "arn:aws:states:::batch:submitJob.sync",
                "Parameters": TASK_PARAMETERS,
                "ResultSelector": {"id.$": "$.JobId", "status.$": "$.Status", "exit.$": "$.Container.ExitCode"},
                "End": True,
            }
        },
    }
    return aws.client("stepfunctions").create_state_machine(
        name="BatchOnly", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/local"
    )["stateMachineArn"]


def run_batch_machine(aws: LocalAws, timeout: float = 30) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    arn = aws.client("stepfunctions").start_execution(
        stateMachineArn=batch_machine(aws), name="fixture", input=json.dumps({"jobId": "x"})
    )["executionArn"]
    execution = wait_for_execution(aws, arn, timeout)
    return execution, history(aws, arn)


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
        "batch_integration",
        "batch_runner",
        "batch_threads",
        "lambda_invoker",
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


# --- batch_integration ---------------------------------------------------------------------------


def test_without_the_integration_fix_the_batch_task_fails_and_no_job_is_submitted(aws, fixes, batch_for):
    moto_fixes.uninstall(["batch_integration"])
    batch_for("--exit", "0")

    execution, events = run_batch_machine(aws)

    assert execution["status"] == "FAILED"
    # botocore's serializer (moto's client skips validation) finds no member called JobName
    assert event_of(events, "TaskFailed") == {"error": "States.Runtime", "cause": "'JobName'"}
    assert batch_jobs(aws) == []


def test_with_the_integration_fix_moto_gets_the_request_as_boto3_sends_it(aws, fixes):
    # moto's own Batch (no runner fix): it fails the job without running it, after a while
    moto_fixes.uninstall(["batch_runner"])
    moto_fixes.install(["batch_integration"])

    execution, events = run_batch_machine(aws)

    [job] = batch_jobs(aws)
    assert job["jobName"] == "fixture-job"
    assert job["parameters"] == {"Size": "64"}
    assert job["timeout"] == {"attemptDurationSeconds": 120}
    assert job["tags"] == {"Purpose": "test"}
    assert job["container"]["command"] == ["python", "-m", "stylize_worker", "Ref::Size"]
    environment = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert json.loads(environment["JOB_JSON"]) == {"jobId": "x"}
    assert environment["EXTRA"] == "1"
    assert environment["MANAGED_BY_AWS"] == "STARTED_BY_STEP_FUNCTIONS"  # moto's own lowercase entry
    # Step Functions' casing of the responses: the interpreter found JobId, and the failure's cause
    # is the job's description in PascalCase, as AWS gives it
    submitted = json.loads(event_of(events, "TaskSubmitted")["output"])
    assert submitted == {"JobArn": job["jobArn"], "JobName": "fixture-job", "JobId": job["jobId"]}
    assert execution["status"] == "FAILED"
    cause = json.loads(event_of(events, "TaskFailed")["cause"])
    assert cause["JobId"] == job["jobId"]
    assert cause["Status"] == "FAILED"


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
    moto_fixes.uninstall(["batch_integration"])  # not needed: this job is submitted directly
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


# --- together --------------------------------------------------------------------------------


def test_together_the_template_state_machine_runs_a_job_and_selects_its_result(aws, batch_for, tmp_path):
    batch_for("--record", str(tmp_path), "--print", "working")
    execution_input = new_job(aws)

    execution = run_execution(aws, execution_input)

    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    [job] = batch_jobs(aws)
    # ResultSelector: $.JobId, $.Status, $.StoppedAt
    assert output["batch"] == {"batchJobId": job["jobId"], "status": "SUCCEEDED", "stoppedAt": job["stoppedAt"]}
    [record] = records(tmp_path)
    assert json.loads(record["environ"]["JOB_JSON"]) == execution_input
    assert job_item(aws, execution_input["jobId"])["status"] == "SUCCEEDED"  # recorded by the state machine
    assert messages(aws) == []  # the fake worker sent nothing, and nothing failed
