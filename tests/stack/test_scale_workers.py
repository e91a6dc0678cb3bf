"""The worker pool's scaler (functions/scale_workers) against moto, invoked with its three events
(events/scale_workers/) as `sam local invoke` would: a job arriving, the minutely schedule, a
worker's Batch job ending. The pool's table (workerpool) is read back to see what it did."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import pytest
from workerpool import BUSY, IDLE, STARTING, Registry, Worker

from .local_aws import LocalAws, event

SCALER = "ScaleWorkersFunction"
ARRIVED = "scale_workers/job_arrived.json"


class Pool:
    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.registry = Registry(aws.refs["WorkersTable"], aws.client("dynamodb"))
        self.sqs = aws.client("sqs")
        self.queue = aws.refs["WorkQueue"]

    def scale(
        self, payload: dict[str, Any] | str = "scale_workers/job_arrived.json", **settings: str
    ) -> dict[str, Any]:
        self.aws.overrides.update(settings)
        return self.aws.invoke(SCALER, payload)

    def worker(self, status: str, lease_seconds: float = 60, job: tuple[str, str] | None = None) -> str:
        """A worker in the pool (reserved, and then renewed in `status` as a live one would be)."""
        worker_id = f"w{len(self.registry.state().workers)}{int(time.time() * 1000)}"
        assert self.registry.reserve(worker_id, desired=100, start_seconds=lease_seconds)
        if status != STARTING:
            assert self.registry.renew(worker_id, status, lease_seconds, job=job)
        return worker_id

    def wait(self, jobs: int) -> None:
        """Jobs that arrived earlier and wait on the queue."""
        for number in range(jobs):
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=json.dumps({"job": number}))
            self.registry.arrived()

    def queued_visible(self) -> int:
        found = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"])
        return int(found["Attributes"]["ApproximateNumberOfMessages"])

    def statuses(self) -> list[str]:
        return sorted(w.status for w in self.registry.state().workers)

    def batch_jobs(self) -> list[dict[str, Any]]:
        batch = self.aws.client("batch")
        found = []
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
            found += batch.list_jobs(jobQueue=self.aws.refs["GpuJobQueue"], jobStatus=status)["jobSummaryList"]
        return found


@pytest.fixture
def pool(aws: LocalAws) -> Pool:
    return Pool(aws)


def test_a_job_arriving_at_an_empty_pool_starts_one_worker(pool: Pool):
    started = pool.scale()

    assert (started["started"], started["desired"], started["waiting"]) == (1, 1, 1)  # the arriving job
    [worker] = pool.registry.state().workers
    assert worker.status == STARTING
    assert worker.batch_job_id
    assert pool.registry.state().counted == 1
    [submitted] = pool.aws.client("batch").describe_jobs(jobs=[worker.batch_job_id])["jobs"]
    assert submitted["jobName"] == f"worker-{worker.worker_id}"
    assert submitted["jobDefinition"].endswith(":job-definition/local-worker:1")  # the template's, by name
    assert {"name": "WORKER_ID", "value": worker.worker_id} in submitted["container"]["environment"]


@pytest.mark.parametrize(
    ("present", "waiting", "expected"),
    [
        ([IDLE], 0, 0),  # an idle worker takes the job: no job waits for a worker to start
        ([STARTING], 0, 0),  # one is on its way and will take it
        ([BUSY], 0, 1),  # the only worker is busy: one more
        ([BUSY, BUSY, IDLE], 0, 0),
        ([BUSY], 3, 1),  # busy 1 + ceil((3 waiting + the arriving one) / JobsPerWorker 4) = 2
        ([BUSY], 4, 2),  # busy 1 + ceil(5 / 4) = 3
        ([], 8, 3),  # a burst of 9: one worker per 4 waiting
        ([], 40, 4),  # never more than MaxWorkers (4 by default)
    ],
)
def test_the_pool_grows_by_one_worker_per_jobs_per_worker_waiting(
    pool: Pool, present: list[str], waiting: int, expected: int
):
    for status in present:
        pool.worker(status)
    pool.wait(waiting)

    assert pool.scale()["started"] == expected

    assert pool.registry.state().counted == len(present) + expected
    assert len(pool.batch_jobs()) == expected


def test_the_schedule_keeps_min_warm_workers_up_and_starts_none_for_nothing(pool: Pool):
    assert pool.scale("scale_workers/schedule.json")["started"] == 0  # nothing waits, no minimum

    started = pool.scale("scale_workers/schedule.json", MIN_WARM_WORKERS="2")

    assert (started["started"], started["waiting"]) == (2, 0)
    assert pool.statuses() == [STARTING, STARTING]
    assert pool.scale("scale_workers/schedule.json", MIN_WARM_WORKERS="2")["started"] == 0  # up already


def test_scalers_running_at_once_start_only_what_the_rule_wants(pool: Pool):
    """Eight scalers (eight jobs arriving together) against an empty pool, JobsPerWorker 4: the
    eight jobs want two workers, and two are started between them, whichever scaler starts them."""
    pool.scale("scale_workers/schedule.json")  # the module loaded: the threads share it
    handler = pool.aws.handler(SCALER)
    module = sys.modules[handler.__module__]
    results: list[dict[str, Any]] = []
    with pool.aws._as_function(SCALER):
        threads = [threading.Thread(target=lambda: results.append(module.scale(arriving=1, now=time.time())))
                   for _ in range(8)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sum(result["started"] for result in results) == 2
    assert pool.registry.state().counted == len(pool.registry.state().workers) == 2
    assert len(pool.batch_jobs()) == 2
    assert pool.registry.state().waiting == 8


def test_a_worker_whose_lease_lapsed_is_forgotten_and_its_job_goes_back_to_the_queue(pool: Pool):
    pool.wait(1)
    received = pool.sqs.receive_message(QueueUrl=pool.queue, VisibilityTimeout=600)["Messages"][0]
    pool.registry.taken()  # as the worker that took it did
    pool.worker(BUSY, lease_seconds=0.5, job=("0" * 32, received["ReceiptHandle"]))
    alive = pool.worker(IDLE)
    time.sleep(1)

    scaled = pool.scale("scale_workers/schedule.json")

    assert scaled["reaped"] == 1
    assert [w.worker_id for w in pool.registry.state().workers] == [alive]
    assert pool.registry.state().counted == 1
    assert scaled["waiting"] == 1  # its job is visible again at once, not in 600 s
    assert scaled["started"] == 0  # the idle worker will take it


def test_a_worker_that_never_came_up_is_terminated_and_the_pool_says_why(pool: Pool):
    pool.scale()
    [worker] = pool.registry.state().workers
    lapsed = Worker(worker.worker_id, STARTING, worker.lease_until, worker.batch_job_id)
    pool.aws.client("dynamodb").update_item(
        TableName=pool.aws.refs["WorkersTable"], Key={"workerId": {"S": worker.worker_id}},
        UpdateExpression="SET leaseUntil = :past", ExpressionAttributeValues={":past": {"N": "1"}},
    )  # fmt: skip

    scaled = pool.scale("scale_workers/schedule.json")

    assert scaled["reaped"] == 1
    state = pool.registry.state()
    assert state.start_failure is not None
    assert "GPU" in state.start_failure
    [job] = pool.aws.client("batch").describe_jobs(jobs=[lapsed.batch_job_id])["jobs"]
    assert job["status"] == "FAILED"  # terminated: it must not come up uncounted later


def test_a_workers_batch_job_ending_forgets_it_at_once_and_frees_its_job(pool: Pool):
    pool.scale()
    [worker] = pool.registry.state().workers
    job_id = "0" * 32
    jobs = pool.aws.client("dynamodb")
    jobs.put_item(
        TableName="JobsTable",
        Item={
            "jobId": {"S": job_id},
            "status": {"S": "RUNNING"},
            "attempts": {"N": "1"},
            "workerId": {"S": worker.worker_id},
            "claimedUntil": {"N": "9999999999"},
        },
    )
    pool.wait(1)
    held = pool.sqs.receive_message(QueueUrl=pool.queue, VisibilityTimeout=600)["Messages"][0]
    pool.registry.taken()
    pool.registry.renew(worker.worker_id, BUSY, 60, job=(job_id, held["ReceiptHandle"]))
    ended = event("scale_workers/worker_ended.json")
    ended["detail"]["jobId"] = worker.batch_job_id

    scaled = pool.scale(ended)

    assert scaled["reaped"] == 1
    assert [w.status for w in pool.registry.state().workers] == [STARTING]  # another, for its job
    assert worker.worker_id not in [w.worker_id for w in pool.registry.state().workers]
    assert pool.registry.state().start_failure is None  # it had come up: not a start failure
    assert pool.queued_visible() == 1  # its message is back at once
    item = jobs.get_item(TableName="JobsTable", Key={"jobId": {"S": job_id}})["Item"]
    assert "workerId" not in item  # the next worker may claim it at once
    assert "claimedUntil" not in item
    assert item["attempts"] == {"N": "1"}  # the attempt the dead worker used still counts
    assert pool.registry.state().waiting == 1  # the freed one (the count is never more than the queue holds)


def test_a_worker_that_fails_before_it_comes_up_is_a_start_failure(pool: Pool):
    pool.scale()
    [worker] = pool.registry.state().workers
    ended = event("scale_workers/worker_ended.json")
    ended["detail"]["jobId"] = worker.batch_job_id

    pool.scale(ended)

    assert pool.registry.state().start_failure == "a GPU worker failed as it started"
    cancelled = {**ended, "detail": {**ended["detail"], "attempts": [], "statusReason": "CAPACITY:..."}}
    pool.scale()
    [again] = pool.registry.state().workers
    cancelled["detail"]["jobId"] = again.batch_job_id
    pool.scale(cancelled)
    assert "GPU capacity or quota" in (pool.registry.state().start_failure or "")


def test_a_refused_submission_leaves_no_worker_counted_and_says_why(pool: Pool):
    started = pool.scale(WORKER_JOB_DEFINITION="no-such-definition")

    assert started["started"] == 0
    state = pool.registry.state()
    assert (state.workers, state.counted) == ([], 0)
    assert state.start_failure == "the service could not ask for a GPU worker"


def test_the_waiting_count_follows_arrivals_and_takings_and_the_schedule_lowers_it_to_the_queue(pool: Pool):
    pool.scale()
    pool.scale()
    assert pool.registry.state().waiting == 2  # two arrived, their messages not yet sent
    pool.registry.taken()
    assert pool.registry.state().waiting == 1
    pool.registry.taken()
    pool.registry.taken()  # a copy no one counted: never below zero
    assert pool.registry.state().waiting == 0
    pool.wait(3)
    pool.sqs.purge_queue(QueueUrl=pool.queue)  # three messages gone unseen (say, expired)
    assert pool.scale("scale_workers/schedule.json")["waiting"] == 0


def test_a_worker_that_comes_up_clears_the_start_failure(pool: Pool):
    pool.registry.record_start_failure("no GPU")
    pool.registry.came_up()
    assert pool.registry.state().start_failure is None
