"""The local Batch runner: the template's state machine runs the real worker through it, and a fake
worker (tests/local/fake_worker.py) shows its states, failures, timeouts, retries, slots and
environment in a fraction of a second each."""

from __future__ import annotations

import io
import json
import logging
import signal
import sys
import time
from typing import Any

import pytest
from PIL import Image
from stylelocal import moto_fixes
from stylelocal.aws import LocalAws
from stylelocal.batch import EXITED, STOPPED, TIMED_OUT, Attempt, LocalBatch, glob_matches, should_retry
from stylelocal.template import resources
from styletransfer.samples import swirls

from .conftest import (
    FAKE_WORKER,
    content_image,
    image_bytes,
    job_item,
    messages,
    new_job,
    process_is_gone,
    records,
    run_execution,
    wait_for_execution,
)

GENERIC_REASON = "the style transfer job failed; please try again"


def template_strategy() -> dict[str, Any]:
    """The job definition's RetryStrategy as the Batch API spells it."""
    strategy = resources("AWS::Batch::JobDefinition")["WorkerJobDefinition"]["Properties"]["RetryStrategy"]
    return {
        "attempts": strategy["Attempts"],
        "evaluateOnExit": [{k[0].lower() + k[1:]: v for k, v in rule.items()} for rule in strategy["EvaluateOnExit"]],
    }


def register_worker(aws: LocalAws, **changes: Any) -> None:
    """A new revision of the worker's job definition (SubmitJob by name takes the latest)."""
    batch = aws.client("batch")
    [current] = batch.describe_job_definitions(jobDefinitionName="local-worker")["jobDefinitions"]
    request = {
        "jobDefinitionName": "local-worker",
        "type": "container",
        "containerProperties": current["containerProperties"],
        "retryStrategy": current["retryStrategy"],
        "timeout": current["timeout"],
        **changes,
    }
    batch.register_job_definition(**request)


def batch_job(aws: LocalAws, execution: dict[str, Any]) -> dict[str, Any]:
    """The Batch job of a finished execution, as DescribeJobs gives it."""
    batch = aws.client("batch")
    [summary] = [j for s in ("SUCCEEDED", "FAILED") for j in batch.list_jobs(jobQueue="local-gpu", jobStatus=s)
                 ["jobSummaryList"] if j["jobName"] == execution["jobId"]]  # fmt: skip
    return batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]


def submit(aws: LocalAws, name: str = "direct", **job: Any) -> str:
    return aws.client("batch").submit_job(jobName=name, jobQueue="local-gpu", jobDefinition="local-worker", **job)[
        "jobId"
    ]


def wait_until(condition: Any, timeout: float = 15, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.05)


# --- the retry strategy ----------------------------------------------------------------------


def test_the_templates_retry_strategy_retries_only_a_lost_host():
    strategy = template_strategy()
    lost_host = Attempt(status_reason="Host EC2 (instance i-0123456789abcdef0) terminated.")
    assert should_retry(strategy, 1, lost_host)
    assert should_retry(strategy, 2, lost_host)
    assert not should_retry(strategy, 3, lost_host)  # three attempts in all
    assert not should_retry(strategy, 1, Attempt(exit_code=2, status_reason=EXITED))  # bad input
    assert not should_retry(strategy, 1, Attempt(exit_code=1, status_reason=EXITED))  # the worker's failure
    assert not should_retry(strategy, 1, Attempt(exit_code=137, status_reason=EXITED, reason="OutOfMemoryError"))


def test_retry_rules_match_globs_in_order_and_an_unmatched_failure_is_retried():
    strategy = {"attempts": 2, "evaluateOnExit": [{"onExitCode": "4*", "onReason": "Out*", "action": "exit"}]}
    assert not should_retry(strategy, 1, Attempt(exit_code=42, reason="OutOfMemory"))  # actions ignore case
    assert should_retry(strategy, 1, Attempt(exit_code=42, reason="CannotPull"))  # one condition fails: no match
    assert should_retry({"attempts": 2}, 1, Attempt(exit_code=1))  # no rules: any failure is retried
    assert not should_retry({}, 1, Attempt(exit_code=1))  # one attempt by default
    assert glob_matches("*", None)
    assert glob_matches("Host EC2*", "Host EC2 (instance i-1) terminated.")
    assert not glob_matches("Host EC2", "Host EC2 (instance i-1) terminated.")
    assert not glob_matches("2", "20")


# --- the real worker, through the template's state machine -----------------------------------


def test_the_state_machine_runs_the_real_worker_to_a_result(aws, caplog):
    caplog.set_level(logging.INFO, logger="stylelocal.batch")
    execution_input = new_job(aws)
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    s3.put_object(Bucket=bucket, Key=execution_input["inputKey"], Body=content_image(), ContentType="image/jpeg")
    s3.put_object(
        Bucket=bucket, Key=execution_input["styleKey"], Body=image_bytes(swirls(96)), ContentType="image/jpeg"
    )
    batch = LocalBatch(aws, device="cpu").start()  # the job definition's own command: the real worker
    try:
        execution = run_execution(aws, execution_input, timeout=240)
    finally:
        batch.stop()

    assert execution["status"] == "SUCCEEDED", execution
    batch_job_id = json.loads(execution["output"])["batch"]["batchJobId"]
    job = batch.job(batch_job_id)
    assert job is not None
    assert job.command == [sys.executable, "-m", "stylize_worker"]
    assert json.loads(job.environment["JOB_JSON"]) == execution_input  # the whole input reaches the worker
    result = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=execution_input["outputKey"])["Body"].read()))
    assert (result.format, result.size) == ("JPEG", (64, 43))
    item = job_item(aws, execution_input["jobId"])
    assert item["status"] == "SUCCEEDED"  # recorded by the state machine, whatever becomes of the message
    assert item["executionArn"] == execution["executionArn"]
    sent = messages(aws)
    completed = {"type": "completed", "requestId": execution_input["jobId"], "resultKey": execution_input["outputKey"]}
    assert sent[-1] == completed
    assert all(m["type"] == "progress" for m in sent[:-1])
    # the worker's output is logged, line by line, under the job's name
    timings = [r.getMessage() for r in caplog.records if "stylize-worker timings" in r.getMessage()]
    assert timings
    assert timings[0].startswith(f"[{execution_input['jobId']}] ")


# --- every job ends: the state machine records it ------------------------------------------------


def test_a_public_job_that_succeeds_is_recorded_as_a_feed_item_without_expiry(aws, batch_for):
    batch_for()
    execution_input = new_job(aws)
    execution = run_execution(aws, execution_input)
    assert execution["status"] == "SUCCEEDED", execution
    item = job_item(aws, execution_input["jobId"])
    assert (item["status"], item["resultKey"], item["progress"]) == ("SUCCEEDED", execution_input["outputKey"], 1)
    assert item["feed"] == "public"
    assert "expiresAt" not in item  # a Feed item is kept until deleted
    assert item["completedAt"] == batch_job(aws, execution_input)["stoppedAt"]


def test_a_private_job_that_succeeds_keeps_its_expiry_and_stays_out_of_the_feed(aws, batch_for):
    batch_for()
    execution_input = new_job(aws, private=True)
    expires = job_item(aws, execution_input["jobId"])["expiresAt"]
    assert run_execution(aws, execution_input)["status"] == "SUCCEEDED"
    item = job_item(aws, execution_input["jobId"])
    assert (item["status"], item["resultKey"]) == ("SUCCEEDED", execution_input["outputKey"])
    assert "feed" not in item
    assert item["expiresAt"] == expires


def start(aws: LocalAws, execution_input: dict[str, Any]) -> str:
    sfn = aws.client("stepfunctions")
    return sfn.start_execution(
        stateMachineArn=aws.refs["TransferStateMachine"],
        name=execution_input["jobId"],
        input=json.dumps(execution_input),
    )["executionArn"]


def running_job(batch: LocalBatch, job_name: str) -> Any:
    wait_until(lambda: any(j.name == job_name and j.status == "RUNNING" for j in batch.jobs()), what="the job's start")
    [job] = [j for j in batch.jobs() if j.name == job_name]
    return job


def test_a_success_the_notifier_recorded_first_is_left_as_it_is(aws, batch_for):
    from styleservice.jobs import Jobs

    batch = batch_for("--sleep", "1")
    execution_input = new_job(aws)
    arn = start(aws, execution_input)
    running_job(batch, execution_input["jobId"])
    # the worker's `completed` message reached the notifier before Batch's end reached the state machine
    assert Jobs(aws.refs["JobsTable"]).mark_succeeded(execution_input["jobId"], execution_input["outputKey"], True)
    before = job_item(aws, execution_input["jobId"])
    assert wait_for_execution(aws, arn)["status"] == "SUCCEEDED"
    assert job_item(aws, execution_input["jobId"]) == before


def test_a_job_batch_cancels_for_want_of_a_gpu_fails_with_a_reason_the_user_can_read(aws, batch_for):
    batch = batch_for("--sleep", "30")
    execution_input = new_job(aws)
    arn = start(aws, execution_input)
    job = running_job(batch, execution_input["jobId"])
    # what Batch does to a job at the queue's head that no instance could be launched for, after
    # the queue's JobStateTimeLimitActions' 10 minutes
    batch.terminate(
        job.job_id, "Canceled by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    )
    execution = wait_for_execution(aws, arn)
    reason = "no GPU became free to run the style transfer (the service is at its capacity); please try again later"
    assert (execution["status"], execution["cause"]) == ("FAILED", reason)
    assert messages(aws) == [{"type": "failed", "requestId": execution_input["jobId"], "error": reason}]
    item = job_item(aws, execution_input["jobId"])
    assert (item["status"], item["error"]) == ("FAILED", reason)


def test_the_queue_cancels_jobs_that_cannot_be_placed_within_minutes():
    [queue] = resources("AWS::Batch::JobQueue").values()
    actions = queue["Properties"]["JobStateTimeLimitActions"]
    assert {a["Reason"] for a in actions} >= {
        "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
        "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
    }
    assert all(a["State"] == "RUNNABLE" and a["Action"] == "CANCEL" and a["MaxTimeSeconds"] <= 600 for a in actions)


# --- failures ---------------------------------------------------------------------------------


def test_a_worker_that_fails_on_bad_input_fails_the_execution_with_its_reason(aws, batch_for):
    reason = "the content image is not an image (PNG, JPEG or WebP)"
    batch_for("--error", reason, "--exit", "2")
    execution_input = new_job(aws)

    execution = run_execution(aws, execution_input)

    assert execution["status"] == "FAILED"
    assert execution["cause"] == reason
    assert messages(aws) == [{"type": "failed", "requestId": execution_input["jobId"], "error": reason}]
    item = job_item(aws, execution_input["jobId"])
    assert (item["status"], item["error"]) == ("FAILED", reason)
    job = batch_job(aws, execution_input)
    assert job["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [2]  # exit 2: never retried
    assert job["statusReason"] == EXITED


def test_an_attempt_past_its_timeout_is_killed_and_not_retried(aws, batch_for, tmp_path):
    register_worker(aws, timeout={"attemptDurationSeconds": 1}, retryStrategy={"attempts": 3})
    batch_for("--record", str(tmp_path), "--sleep", "60", kill_grace=2)
    execution_input = new_job(aws)

    started = time.monotonic()
    execution = run_execution(aws, execution_input)

    assert time.monotonic() - started < 20
    assert execution["status"] == "FAILED"
    job = batch_job(aws, execution_input)
    assert (job["status"], job["statusReason"]) == ("FAILED", TIMED_OUT)
    [attempt] = job["attempts"]  # a timeout is not retried, whatever the strategy says
    assert attempt["container"]["exitCode"] == 128 + signal.SIGTERM
    [record] = records(tmp_path)
    assert process_is_gone(record["pid"])
    assert messages(aws) == [{"type": "failed", "requestId": execution_input["jobId"], "error": GENERIC_REASON}]
    assert job_item(aws, execution_input["jobId"])["status"] == "FAILED"


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(aws, batch_for, tmp_path):
    register_worker(aws, timeout={"attemptDurationSeconds": 1})
    batch = batch_for("--record", str(tmp_path), "--ignore-term", "--sleep", "60", kill_grace=0.5)

    job_id = submit(aws)

    assert batch.wait(job_id, timeout=15) == "FAILED"
    job = aws.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["container"]["exitCode"] == 128 + signal.SIGKILL
    assert process_is_gone(records(tmp_path)[0]["pid"])


def test_a_failure_that_a_retry_rule_matches_is_retried_until_it_succeeds(aws, batch_for, tmp_path):
    strategy = {
        "attempts": 3,
        "evaluateOnExit": [{"onExitCode": "75", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
    }
    register_worker(aws, retryStrategy=strategy)
    batch_for("--record", str(tmp_path), "--exit-first", "75")
    execution_input = new_job(aws)

    execution = run_execution(aws, execution_input)

    assert execution["status"] == "SUCCEEDED", execution
    job = batch_job(aws, execution_input)
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [75, 0]
    assert [r["environ"]["AWS_BATCH_JOB_ATTEMPT"] for r in records(tmp_path)] == ["1", "2"]
    assert messages(aws) == []


# --- slots, environment, command, stopping ------------------------------------------------------


def test_one_slot_runs_one_job_at_a_time(aws, batch_for):
    batch = batch_for("--sleep", "1", slots=1)
    first, second = submit(aws, "first"), submit(aws, "second")

    wait_until(lambda: batch.status(first) == "RUNNING", what="the first job's start")
    assert batch.status(second) == "RUNNABLE"  # waiting for the slot
    assert batch.wait(first, 15) == "SUCCEEDED"
    assert batch.wait(second, 15) == "SUCCEEDED"
    first_job, second_job = batch.describe(first), batch.describe(second)
    assert first_job is not None
    assert second_job is not None
    assert second_job["startedAt"] >= first_job["stoppedAt"]


def test_two_slots_run_two_jobs_at_once(aws, batch_for):
    batch = batch_for("--sleep", "2", slots=2)
    first, second = submit(aws, "first"), submit(aws, "second")
    wait_until(lambda: batch.status(first) == batch.status(second) == "RUNNING", what="both jobs running")


def test_the_job_gets_the_definitions_environment_and_never_the_hosts_aws_settings(
    aws, batch_for, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-real-looking-secret")
    batch = batch_for("--record", str(tmp_path))

    job_id = submit(aws, containerOverrides={"environment": [{"name": "JOB_JSON", "value": '{"jobId": "x"}'}]})

    assert batch.wait(job_id, 15) == "SUCCEEDED"
    [record] = records(tmp_path)
    env = record["environ"]
    assert env["JOB_JSON"] == '{"jobId": "x"}'
    assert env["IMAGES_BUCKET"] == aws.refs["ImagesBucket"]
    assert env["RESULTS_QUEUE_URL"] == aws.refs["ResultsQueue"]
    assert env["JOBS_TABLE"] == aws.refs["JobsTable"]
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL"] == aws.endpoint
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_ACCESS_KEY_ID"] == "LOCAL-WorkerJobRole"  # its job role's, as ECS gives them
    assert "AWS_PROFILE" not in env
    assert (env["AWS_BATCH_JOB_ID"], env["AWS_BATCH_JQ_NAME"]) == (job_id, "local-gpu")
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # on the CPU no GPU is visible


def test_each_slot_of_a_gpu_runner_sees_its_gpu(aws, batch_for, tmp_path):
    batch = batch_for("--record", str(tmp_path), device="cuda:1")  # names a GPU without asking torch
    assert batch.slots == 1
    assert batch.wait(submit(aws), 15) == "SUCCEEDED"
    assert records(tmp_path)[0]["environ"]["CUDA_VISIBLE_DEVICES"] == "1"


def test_device_and_slots_are_checked(aws):
    with pytest.raises(ValueError, match="device must be"):
        LocalBatch(aws, device="tpu")
    with pytest.raises(ValueError, match="slots must be at least 1"):
        LocalBatch(aws, device="cpu", slots=0)
    assert LocalBatch(aws, device="cpu").slots == 1


def test_the_jobs_own_command_runs_with_this_python_and_its_parameters(aws, batch_for, caplog):
    caplog.set_level(logging.INFO, logger="stylelocal.batch")
    batch = batch_for(command=None)
    command = ["python", str(FAKE_WORKER), "--print", "Ref::Greeting"]

    job_id = submit(aws, "greeter", containerOverrides={"command": command}, parameters={"Greeting": "hello"})

    assert batch.wait(job_id, 15) == "SUCCEEDED"
    job = batch.job(job_id)
    assert job is not None
    assert job.command == [sys.executable, str(FAKE_WORKER), "--print", "hello"]
    assert list(job.output) == ["hello"]
    assert "[greeter] hello" in [r.getMessage() for r in caplog.records]


def test_a_command_that_cannot_start_fails_the_job_with_a_reason(aws, batch_for, tmp_path):
    batch = batch_for(command=[str(tmp_path / "missing")])
    job_id = submit(aws)
    assert batch.wait(job_id, 15) == "FAILED"
    job = aws.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["attempts"][0]["container"]["reason"].startswith("CannotStartContainerError")


def test_stop_kills_the_running_job_fails_the_waiting_one_and_lets_go_of_moto(aws, tmp_path):
    from .conftest import fake_worker

    batch = LocalBatch(aws, device="cpu", slots=1, command=fake_worker("--record", str(tmp_path), "--sleep", "60"))
    batch.start()
    running, waiting = submit(aws, "running"), submit(aws, "waiting")
    wait_until(lambda: batch.status(running) == "RUNNING" and records(tmp_path), what="the first job's start")

    started = time.monotonic()
    batch.stop()

    assert time.monotonic() - started < 5
    assert moto_fixes.batch_runner() is None
    described = {j["jobName"]: j for j in aws.client("batch").describe_jobs(jobs=[running, waiting])["jobs"]}
    assert {name: (j["status"], j["statusReason"]) for name, j in described.items()} == {
        "running": ("FAILED", STOPPED),
        "waiting": ("FAILED", STOPPED),
    }
    assert process_is_gone(records(tmp_path)[0]["pid"])


def test_no_worker_process_outlives_its_runner(aws, tmp_path):
    from .conftest import fake_worker

    with LocalBatch(aws, device="cpu", command=fake_worker("--record", str(tmp_path), "--sleep", "60")) as batch:
        job_id = submit(aws)
        wait_until(lambda: records(tmp_path), what="the worker's start")
    assert batch.status(job_id) == "FAILED"
    pid = records(tmp_path)[0]["pid"]
    assert process_is_gone(pid)
