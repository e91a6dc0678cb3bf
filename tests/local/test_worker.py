"""The pool's worker (agent/stylize_worker) against moto, with real task tokens: a state machine of
the template's PaintOnWorker state (stylelocal.paint_only) puts each job on the work queue, and
the worker takes it, paints it and answers. In this process for one job at a time; as
`python -m stylize_worker` for what a process does (start-up, idle exit, SIGTERM, many jobs).
Tiny images and the `preview` preset at 64 px keep a job to a second or two on a CPU."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from PIL import Image
from stylejob.job import BAD_INPUT, FAILED, MAX_SIZE, MIN_SIZE, PRESETS, WORKER_LOST, Job, JobOptions
from stylelocal.aws import LocalAws
from stylelocal.template import ROOT
from stylize_worker.serve import Config, Keepalive, Worker
from stylize_worker.task import FINISH_WITHIN_SECONDS, HandBack, Task, TaskLost
from workerpool import BUSY, IDLE

from .conftest import content_image
from .worker_harness import LEASE, STYLE_KEY, Pool, finished, process_environment, style_image, worker_process


@pytest.fixture
def pool(aws: LocalAws) -> Pool:
    return Pool(aws)


def started_worker(pool: Pool, **changes: str) -> Worker:
    """A started worker in this process (its clients reach moto through AWS_ENDPOINT_URL), taking
    jobs one at a time (`_take_one`) with no heartbeat thread, or serving (`serve`) with one."""
    environ = pool.environment(**changes)
    started = Worker(Config.from_environ(environ), environ)
    started.start()
    started.keepalive = Keepalive(started.registry, started.config)  # serve() makes and starts its own
    return started


@pytest.fixture
def worker(pool: Pool) -> Worker:
    return started_worker(pool)


def job_lines(output: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "stylize-worker job"]


# --- one job ----------------------------------------------------------------------------------


def test_a_job_is_painted_stored_announced_and_answered(pool: Pool, worker: Worker, capsys):
    job = pool.job(content_image())
    arn = pool.start(job)

    assert worker._take_one(wait=10)

    execution = pool.machine.wait(arn, 30)
    assert execution["status"] == "SUCCEEDED"
    answer = json.loads(execution["output"])
    assert answer["resultKey"] == job.output_key
    assert answer["workerId"] == worker.config.worker_id
    assert answer["attempt"] == 1
    assert abs(answer["completedAt"] - time.time() * 1000) < 60_000
    result = Image.open(io.BytesIO(pool.output(job) or b""))
    assert (result.format, result.size) == ("JPEG", (64, 43))  # 64 px long side, the photo's 3:2
    messages = pool.results()
    assert messages[-1] == {"type": "completed", "requestId": job.job_id, "resultKey": job.output_key}
    progress = messages[:-1]
    assert progress, "no progress message"
    assert all(m["type"] == "progress" and m["total"] == 60 and 1 <= m["iteration"] < 60 for m in progress)
    assert len(progress) < 30  # throttled, not one per iteration
    item = pool.job_item(job)
    assert (item["attempts"], item["workerId"]) == ({"N": "1"}, {"S": worker.config.worker_id})
    assert pool.queued() == {"visible": 0, "held": 0}  # the message is gone once answered
    [line] = job_lines(capsys.readouterr().out)
    assert line["outcome"] == "succeeded"
    assert line["jobId"] == job.job_id
    assert set(line["phases"]) == {"download", "decode", "optimisation", "encode_upload"}
    assert line["residentMiB"] > 100  # PyTorch and the network, at least
    assert line["gpuPeakMiB"] is None  # no GPU here
    assert line["seconds"] >= line["phases"]["optimisation"] > 0
    pace = pool.registry.pace()  # for the page's estimates: this job's seconds per megapixel-iteration
    assert pace is not None
    assert pace["device"] == "cpu"
    [scale] = line["scales"]
    assert pace["secondsPerMegapixelIteration"] == pytest.approx(scale["seconds"] / (64 * 43 * 60 / 1e6), rel=1e-3)


@pytest.mark.parametrize(
    ("content", "style", "reason"),
    [
        (None, None, "the content image was not found (uploads expire after a day)"),
        (content_image()[:300], None, "the content image is damaged or truncated"),
        (
            content_image(),
            b"<html>this is not an image</html>",
            "the style image is not an image in a format we can read",
        ),
    ],
    ids=["missing", "truncated", "not an image"],
)
def test_bad_input_fails_the_task_with_its_reason_and_the_next_job_is_unharmed(
    pool: Pool, worker: Worker, content: bytes | None, style: bytes | None, reason: str, capsys
):
    if style is not None:
        pool.s3.put_object(Bucket=pool.bucket, Key=STYLE_KEY, Body=style)
    bad = pool.job(content)
    arn = pool.start(bad)

    assert worker._take_one(wait=10)

    execution = pool.machine.wait(arn, 30)
    assert execution["status"] == "FAILED"
    assert execution["error"] == BAD_INPUT
    assert execution["cause"].startswith(reason)
    assert "Traceback" not in execution["cause"]
    assert pool.output(bad) is None
    assert [m for m in pool.results() if m["type"] == "completed"] == []
    assert pool.queued() == {"visible": 0, "held": 0}

    pool.s3.put_object(Bucket=pool.bucket, Key=STYLE_KEY, Body=style_image())
    good = pool.job(content_image())
    arn = pool.start(good)
    assert worker._take_one(wait=10)
    assert pool.machine.wait(arn, 30)["status"] == "SUCCEEDED"
    assert pool.output(good) is not None
    assert [line["outcome"] for line in job_lines(capsys.readouterr().out)] == ["failed", "succeeded"]


def test_a_storage_failure_is_a_failure_not_bad_input(pool: Pool):
    worker = started_worker(pool, IMAGES_BUCKET="no-such-bucket")
    job = pool.job(content_image())
    arn = pool.start(job)

    assert worker._take_one(wait=10)

    execution = pool.machine.wait(arn, 30)
    assert (execution["error"], execution["cause"]) == (
        FAILED, "the content image could not be read from storage (NoSuchBucket)")  # fmt: skip


# --- work items that are not to be painted -----------------------------------------------------


def test_a_work_item_whose_execution_was_stopped_is_dropped_unpainted(pool: Pool, worker: Worker, capsys):
    job = pool.job(content_image())
    arn = pool.start(job)
    wait_until(lambda: pool.queued()["visible"] == 1, 10, "the work item sent")
    pool.machine.sfn.stop_execution(executionArn=arn, cause="the job was cancelled")

    assert worker._take_one(wait=10)

    assert pool.output(job) is None
    assert pool.results() == []
    assert "attempts" not in pool.job_item(job)  # not counted: it never ran
    assert pool.queued() == {"visible": 0, "held": 0}
    assert "work item for a task that is over" in capsys.readouterr().out


def test_a_job_that_stopped_max_attempts_workers_fails_without_running(pool: Pool, worker: Worker):
    job = pool.job(content_image())
    arn = pool.start(job)
    most = worker.config.max_attempts
    pool.dynamodb.update_item(  # as if `most` workers had died painting it
        TableName=pool.aws.refs["JobsTable"], Key={"jobId": {"S": job.job_id}},
        UpdateExpression="SET attempts = :n", ExpressionAttributeValues={":n": {"N": str(most)}},
    )  # fmt: skip

    assert worker._take_one(wait=10)

    execution = pool.machine.wait(arn, 30)
    assert execution["error"] == WORKER_LOST
    assert f"stopped its GPU worker {most} times" in execution["cause"]
    assert pool.output(job) is None
    assert pool.results() == []


def test_a_job_another_live_worker_holds_is_left_until_its_claim_lapses(pool: Pool, worker: Worker):
    """A second copy of a job's message (SQS delivers at least once), or a job whose worker is gone
    but not yet known to be: the message comes back once the holder's claim would have lapsed."""
    job = pool.job(content_image())
    arn = pool.start(job)
    pool.registry.arrived()  # as the scaler counted it
    holder_lapses = time.time() + 60
    pool.dynamodb.update_item(
        TableName=pool.aws.refs["JobsTable"], Key={"jobId": {"S": job.job_id}},
        UpdateExpression="SET attempts = :one, workerId = :other, claimedUntil = :until",
        ExpressionAttributeValues={":one": {"N": "1"}, ":other": {"S": "another"},
                                   ":until": {"N": str(holder_lapses)}},
    )  # fmt: skip

    assert worker._take_one(wait=10)

    assert pool.output(job) is None
    assert pool.machine.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"  # left to the other
    assert pool.job_item(job)["workerId"] == {"S": "another"}
    assert pool.queued() == {"visible": 0, "held": 1}  # kept, out of sight until the claim lapses
    assert pool.registry.state().waiting == 1  # still waiting
    pool.machine.sfn.stop_execution(executionArn=arn)


def test_a_message_that_is_not_a_work_item_is_dropped(pool: Pool, worker: Worker, capsys):
    pool.sqs.send_message(QueueUrl=pool.aws.refs["WorkQueue"], MessageBody='{"job": "paint me"}')

    assert worker._take_one(wait=10)

    assert pool.queued() == {"visible": 0, "held": 0}
    assert "work item dropped" in capsys.readouterr().out


def test_the_worker_refuses_a_job_the_contract_refuses(pool: Pool, worker: Worker):
    """A work item whose job is bad (an output key that is not the job's own) is never painted:
    the contract (stylejob) refuses it before anything is read or written."""
    job = pool.job(content_image()).message()
    body = {"job": {**job, "outputKey": "styles/udnie.jpg"}, "taskToken": "x" * 40}
    pool.sqs.send_message(QueueUrl=pool.aws.refs["WorkQueue"], MessageBody=json.dumps(body))

    assert worker._take_one(wait=10)

    assert pool.queued() == {"visible": 0, "held": 0}
    assert pool.s3.list_objects_v2(Bucket=pool.bucket, Prefix="styles/udnie").get("KeyCount") == 0


# --- while a job runs ------------------------------------------------------------------------------


def serving(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        time.sleep(0.05)


def test_a_cancelled_job_stops_painting_within_a_heartbeat(pool: Pool, worker: Worker, capsys):
    """The heartbeat finds the task gone (the execution stopped, e.g. the job was deleted), and the
    painting stops at its next iteration: nothing is stored, the worker goes on to the next job."""
    job = pool.job(content_image(), size=256)  # many seconds of work on a CPU
    arn = pool.start(job)
    thread = serving(worker)
    wait_until(lambda: any(w.status == BUSY for w in pool.registry.state().workers), 30, "busy")

    stopped = time.monotonic()
    pool.machine.sfn.stop_execution(executionArn=arn, cause="cancelled")
    wait_until(lambda: worker.jobs_done == 1, 60, "done with the job")
    assert time.monotonic() - stopped < LEASE + 10  # a heartbeat, then one iteration at 256 px

    worker.stopping.set()
    thread.join(timeout=30)
    assert [line["outcome"] for line in job_lines(capsys.readouterr().out)] == ["lost"]
    assert pool.output(job) is None
    assert [m for m in pool.results() if m["type"] == "completed"] == []
    assert pool.registry.state().counted == 0  # stopped: it left the pool


def test_the_checkpoint_stops_a_lost_job_and_hands_back_one_that_would_not_finish_soon():
    job = Job.new(private=False, content_type="image/png", style_key=STYLE_KEY, options=JobOptions())
    from stylejob.job import WorkItem

    task = Task(WorkItem(job=job, task_token="t"), "receipt", None, "me", LEASE)  # type: ignore[arg-type]
    task.checkpoint(0.5, 100.0)  # not stopping: goes on, however long it takes
    stopping = True
    task.stopping = lambda: stopping
    task.checkpoint(0.9, 9.0)  # 1 s left: finished
    almost = 1 - (FINISH_WITHIN_SECONDS - 1) / 100  # a second less than the limit left, at 1 s per 1 %
    task.checkpoint(almost, almost * 100)
    with pytest.raises(HandBack):
        task.checkpoint(0.1, 9.0)  # 81 s left
    task.lost.set()
    with pytest.raises(TaskLost):
        task.checkpoint(0.99, 1.0)


# --- the worker as Batch runs it ------------------------------------------------------------------


def test_a_worker_starts_serves_and_leaves_the_pool_when_idle(pool: Pool, aws: LocalAws):
    job = pool.job(content_image())
    arn = pool.start(job)  # waiting before the worker is up, as a job that started the worker

    process = worker_process(pool, aws, WORKER_IDLE_SECONDS="2")
    code, lines = finished(process, timeout=180)

    assert code == 0
    assert pool.machine.wait(arn, 5)["status"] == "SUCCEEDED"
    ready, painted, leaving = lines[0], job_lines("\n".join(json.dumps(line) for line in lines)), lines[-1]
    assert ready["message"] == "stylize-worker ready"
    assert set(ready["phases"]) == {"imports", "clients", "model", "warm_up"}
    assert ready["total"] >= ready["phases"]["imports"] > 0
    assert [line["outcome"] for line in painted] == ["succeeded"]
    assert (leaving["message"], leaving["why"], leaving["jobsDone"]) == ("stylize-worker leaving", "idle for 2 s", 1)
    state = pool.registry.state()
    assert (state.workers, state.counted) == ([], 0)  # its item and its count went together
    assert 0 < state.pace["startSeconds"] <= ready["total"] + 1  # how long a worker takes to start, here


def test_min_warm_workers_keeps_an_idle_worker_until_it_is_stopped(pool: Pool, aws: LocalAws):
    process = worker_process(pool, aws, WORKER_IDLE_SECONDS="1", MIN_WARM_WORKERS="1")
    wait_until(lambda: [w.status for w in pool.registry.state().workers] == [IDLE], 120, "up")
    time.sleep(4)  # several idle periods
    assert process.poll() is None
    assert pool.registry.state().counted == 1

    process.send_signal(signal.SIGTERM)
    code, lines = finished(process, timeout=30)

    assert code == 0
    assert lines[-1]["why"] == "stopped"
    assert pool.registry.state().counted == 0


def test_sigterm_hands_back_a_job_that_would_not_finish_soon(pool: Pool, aws: LocalAws):
    job = pool.job(content_image(), size=256)
    arn = pool.start(job)
    process = worker_process(pool, aws)
    wait_until(lambda: any(w.status == BUSY for w in pool.registry.state().workers), 120, "busy")
    time.sleep(1)  # into the painting, so that its pace is known

    process.send_signal(signal.SIGTERM)
    code, lines = finished(process, timeout=10 - 1)  # inside the local Batch runner's grace

    assert code == 0
    assert [line["outcome"] for line in lines if line.get("message") == "stylize-worker job"] == ["handed back"]
    item = pool.job_item(job)
    assert item["attempts"] == {"N": "0"}  # a handed-back job has not used an attempt
    assert "workerId" not in item
    assert pool.machine.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"  # for another worker
    assert pool.queued()["visible"] == 1  # at once, not when its lease lapses
    assert pool.output(job) is None
    pool.machine.sfn.stop_execution(executionArn=arn)


def test_a_worker_the_pool_no_longer_counts_takes_no_job(pool: Pool, aws: LocalAws):
    job = pool.job(content_image())
    arn = pool.start(job)
    environ = pool.environment()
    pool.registry.release(environ["WORKER_ID"])  # reaped before it came up

    done = subprocess.run([sys.executable, "-m", "stylize_worker"], env=process_environment(aws, environ), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip

    assert done.returncode == 0
    assert "not in the pool" in done.stdout
    assert pool.machine.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"  # still waiting
    assert pool.queued()["visible"] == 1
    pool.machine.sfn.stop_execution(executionArn=arn)


@pytest.mark.slow  # many jobs in turn: about 40 s (the GPU check measures memory across mixed jobs too)
def test_many_mixed_jobs_leave_memory_flat_and_a_job_the_same_as_in_a_fresh_process(pool: Pool, aws: LocalAws):
    """Eight jobs of mixed sizes and options through one worker, the last of them the twin of a job
    that then runs first in a fresh worker: the two results are the same bytes (the CPU path is
    deterministic), and the first worker's resident memory after its later jobs is what it was
    after its third, within 40 MiB (the first three meet every image size and option; what they
    cache stays, and a leak of a job's images or its graph would grow it by more than that over
    five jobs). benchmarks/bench_worker.py runs this for hundreds of jobs."""
    first_three = [{"size": 64}, {"size": 80, "preserveColors": True, "styleScale": 0.5}, {"size": 72, "strength": 0.9}]
    again = [{"size": 64, "seed": 3}, {"size": 72, "strength": 0.2}, {"size": 64, "preserveColors": True},
             {"size": 80, "preserveColors": True, "styleScale": 0.5, "seed": 2}]  # fmt: skip
    twin_options = {"size": 80, "styleScale": 0.5, "strength": 0.6, "seed": 5}
    jobs = [pool.job(content_image(), **options) for options in [*first_three, *again]]
    last = pool.job(content_image(), **twin_options)
    executions = [pool.start(job) for job in [*jobs, last]]
    process = worker_process(pool, aws, WORKER_IDLE_SECONDS="2")
    code, lines = finished(process, timeout=600)
    assert code == 0
    assert all(pool.machine.wait(arn, 5)["status"] == "SUCCEEDED" for arn in executions)

    fresh = pool.job(content_image(), **twin_options)
    arn = pool.start(fresh)
    process = worker_process(pool, aws, WORKER_IDLE_SECONDS="1")
    assert finished(process, timeout=180)[0] == 0
    assert pool.machine.wait(arn, 5)["status"] == "SUCCEEDED"

    assert pool.output(last) == pool.output(fresh)
    resident = [line["residentMiB"] for line in lines if line.get("message") == "stylize-worker job"]
    assert len(resident) == 8
    assert max(resident[3:]) - resident[2] < 40, resident


def test_the_contracts_presets_and_sizes_are_ones_the_engine_paints():
    from styletransfer.options import MAX_SIZE as ENGINE_MAX_SIZE
    from styletransfer.options import MIN_SIZE as ENGINE_MIN_SIZE
    from styletransfer.options import PRESETS as ENGINE_PRESETS

    assert set(PRESETS) == {"auto", *ENGINE_PRESETS}
    assert ENGINE_MIN_SIZE <= MIN_SIZE < MAX_SIZE <= ENGINE_MAX_SIZE


def test_the_paint_only_machine_is_the_templates_task(aws: LocalAws):
    from stylelocal.paint_only import definition

    states = json.loads(definition(aws))["States"]
    task = states["PaintOnWorker"]
    asl = json.loads((ROOT / "statemachine" / "transfer.asl.json").read_text())
    [branch] = [b for b in asl["States"]["Run"]["Branches"] if "PaintOnWorker" in b["States"]]
    original = branch["States"]["PaintOnWorker"]
    assert task["Resource"] == original["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert task["Parameters"]["MessageBody"] == original["Parameters"]["MessageBody"]
    assert task["Parameters"]["QueueUrl"] == aws.refs["WorkQueue"]
    assert task["HeartbeatSecondsPath"] == original["HeartbeatSecondsPath"]
