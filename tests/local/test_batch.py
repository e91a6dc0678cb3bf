"""The local Batch runner, which runs the pool's workers as the scaler submits them: a fake worker
(tests/local/fake_worker.py) shows its states, failures, timeouts, retries, slots, environment and
the state changes it publishes to EventBridge, in a fraction of a second each. (The real worker
through it: tests/local/test_pool.py.)"""

from __future__ import annotations

import logging
import signal
import sys
import time
from typing import Any

import pytest
from stylelocal import moto_fixes
from stylelocal.aws import LocalAws
from stylelocal.batch import EXITED, STOPPED, TIMED_OUT, Attempt, LocalBatch, glob_matches, should_retry
from stylelocal.template import resources

from .conftest import (
    FAKE_WORKER,
    process_is_gone,
    records,
)

GENERIC_REASON = "the style transfer job failed; please try again"


def template_strategy() -> dict[str, Any]:
    """The job definition's RetryStrategy as the Batch API spells it."""
    strategy = resources("AWS::Batch::JobDefinition")["WorkerJobDefinition"]["Properties"]["RetryStrategy"]
    rules = strategy.get("EvaluateOnExit", [])
    return {"attempts": strategy["Attempts"], "evaluateOnExit": [{k[0].lower() + k[1:]: v for k, v in rule.items()}
                                                                  for rule in rules]}  # fmt: skip


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


def described(aws: LocalAws, job_id: str) -> dict[str, Any]:
    return aws.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]


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


def test_the_template_never_retries_a_worker():
    """A worker that is gone is replaced by the scaler, and its job goes to another worker."""
    strategy = template_strategy()
    assert not should_retry(strategy, 1, Attempt(status_reason="Host EC2 (instance i-0123456789abcdef0) terminated."))
    assert not should_retry(strategy, 1, Attempt(exit_code=137, status_reason=EXITED))


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


def test_an_attempt_past_its_timeout_is_killed_and_not_retried(aws, batch_for, tmp_path):
    register_worker(aws, timeout={"attemptDurationSeconds": 1}, retryStrategy={"attempts": 3})
    batch = batch_for("--record", str(tmp_path), "--sleep", "60", kill_grace=2)

    started = time.monotonic()
    job_id = submit(aws)
    assert batch.wait(job_id, timeout=20) == "FAILED"

    assert time.monotonic() - started < 20
    job = described(aws, job_id)
    assert (job["status"], job["statusReason"]) == ("FAILED", TIMED_OUT)
    [attempt] = job["attempts"]  # a timeout is not retried, whatever the strategy says
    assert attempt["container"]["exitCode"] == 128 + signal.SIGTERM
    [record] = records(tmp_path)
    assert process_is_gone(record["pid"])


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
    batch = batch_for("--record", str(tmp_path), "--exit-first", "75")

    job_id = submit(aws)

    assert batch.wait(job_id, timeout=20) == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in described(aws, job_id)["attempts"]] == [75, 0]
    assert [r["environ"]["AWS_BATCH_JOB_ATTEMPT"] for r in records(tmp_path)] == ["1", "2"]


def test_every_change_of_a_jobs_status_is_published_as_eventbridge_sees_it(aws, batch_for):
    events: list[dict[str, Any]] = []
    batch = batch_for("--exit", "3", on_state_change=events.append)

    job_id = submit(aws, "worker-1")
    assert batch.wait(job_id, timeout=15) == "FAILED"

    assert [e["detail"]["status"] for e in events] == ["RUNNABLE", "STARTING", "RUNNING", "FAILED"]
    last = events[-1]
    assert (last["detail-type"], last["source"]) == ("Batch Job State Change", "aws.batch")
    assert last["detail"]["jobQueue"] == aws.refs["GpuJobQueue"]  # the ARN, as the template's rule matches it
    assert (last["detail"]["jobId"], last["detail"]["jobName"]) == (job_id, "worker-1")
    assert last["detail"]["attempts"][0]["container"]["exitCode"] == 3
    assert last["resources"] == [last["detail"]["jobArn"]]


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
    with pytest.raises(ValueError, match="slots must be 0 or more"):
        LocalBatch(aws, device="cpu", slots=-1)
    assert LocalBatch(aws, device="cpu").slots == 1


def test_no_slot_runs_nothing_as_an_account_without_gpu_quota(aws, batch_for, tmp_path):
    batch = batch_for("--record", str(tmp_path), slots=0)
    job_id = submit(aws)
    time.sleep(1)
    assert batch.status(job_id) == "RUNNABLE"
    assert records(tmp_path) == []
    batch.terminate(job_id, "cancelled")
    assert batch.status(job_id) == "FAILED"


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
