"""The pool of warm GPU workers, as the workers table records it.

Shipped in the Lambda layer (the scaler, functions/scale_workers) and in the worker's image (the
workers themselves), so both read and write the table the same way.

The table holds one item per worker and one for the pool:

    workerId = "#pool"   workers (how many worker items exist), startFailure (why the last worker
                         that never came up did not), startFailureAt (epoch s)
    workerId = "#queue"  waiting: jobs handed to the pool that no worker has taken yet
    workerId = "#pace"   what the workers measured, for estimates of a job's time: device ("cuda",
                         "cpu"), secondsPerMegapixelIteration (the last job's painting), startSeconds
                         (a worker's last start, process to ready), measuredAt (epoch s)
    workerId = <id>      status (STARTING, IDLE, BUSY), leaseUntil (epoch s), batchJobId,
                         jobId and receiptHandle while BUSY, startedAt, jobsDone, expiresAt (TTL)

Every item a worker has is counted in the pool item's `workers`, and every change to the set of
worker items changes the count in the same transaction, so the two never drift. Starting a
worker is a conditional increment (`workers < desired`), which is what bounds the pool under
races: two scalers that both decide one worker is wanted start one between them.

The jobs waiting are counted here rather than read off the work queue: SQS's count is
approximate, and a job that arrives with others is counted by the scaler before its message is
even sent. The scaler adds each job as it arrives (and each job a gone worker held); a worker
takes one off as it takes a message off the queue (and adds back one it hands back). The minute's
reconcile lowers the count to what the queue holds, should a message have left it unseen (expired).

A worker's lease is renewed while it lives (every third of WORKER_LEASE_SECONDS); a lease that
lapses means the worker is gone (killed, its instance lost, or, for a STARTING one, it never came
up within WorkerStartTimeoutSeconds), and the scaler reaps it: the item and its count go, and the
job it held is made visible on the work queue again at once.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

POOL_KEY = "#pool"
QUEUE_KEY = "#queue"
PACE_KEY = "#pace"
STARTING, IDLE, BUSY = "STARTING", "IDLE", "BUSY"
EXPIRE_AFTER_SECONDS = 86400  # a worker item the scaler never reaped (it too was gone) expires by TTL


def desired_workers(*, busy: int, waiting: int, jobs_per_worker: int, min_warm: int, max_workers: int) -> int:
    """How many workers the pool should have: every busy one, plus one for each `jobs_per_worker`
    jobs waiting (the idle and starting ones among them take those jobs), at least `min_warm`, at
    most `max_workers`. The pool never shrinks here: an idle worker leaves by itself."""
    wanted = busy + math.ceil(max(0, waiting) / max(1, jobs_per_worker))
    return max(0, min(max_workers, max(min_warm, wanted)))


@dataclass(frozen=True)
class Worker:
    worker_id: str
    status: str
    lease_until: float
    batch_job_id: str | None = None
    job_id: str | None = None
    receipt_handle: str | None = None
    jobs_done: int = 0

    def lapsed(self, now: float) -> bool:
        return self.lease_until < now


@dataclass(frozen=True)
class PoolState:
    workers: list[Worker]
    counted: int  # the pool item's count: equal to len(workers), by construction
    start_failure: str | None = None
    start_failure_at: float | None = None
    waiting: int = 0  # jobs no worker has taken yet
    pace: dict[str, Any] | None = None  # the "#pace" item: what the workers measured

    def count(self, status: str, now: float) -> int:
        return sum(1 for w in self.workers if w.status == status and not w.lapsed(now))


def new_worker_id() -> str:
    return uuid.uuid4().hex


class Registry:
    """The workers table (a low-level boto3 DynamoDB client: transactions need it)."""

    def __init__(self, table: str, dynamodb: Any) -> None:
        self.table = table
        self.dynamodb = dynamodb

    # --- reading ----------------------------------------------------------------------------

    def state(self) -> PoolState:
        workers: list[Worker] = []
        counted, failure, failure_at, waiting, pace = 0, None, None, 0, None
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            for item in page["Items"]:
                if item["workerId"]["S"] == POOL_KEY:
                    counted = int(item.get("workers", {}).get("N", "0"))
                    failure = item.get("startFailure", {}).get("S")
                    failure_at = float(item["startFailureAt"]["N"]) if "startFailureAt" in item else None
                elif item["workerId"]["S"] == QUEUE_KEY:
                    waiting = int(item.get("waiting", {}).get("N", "0"))
                elif item["workerId"]["S"] == PACE_KEY:
                    pace = _pace(item)
                else:
                    workers.append(_worker(item))
        return PoolState(workers, counted, failure, failure_at, waiting, pace)

    def pace(self) -> dict[str, Any] | None:
        """What the workers last measured ("#pace"), or None before any worker painted."""
        item = self.dynamodb.get_item(TableName=self.table, Key={"workerId": {"S": PACE_KEY}}).get("Item")
        return _pace(item) if item else None

    def record_pace(self, device: str, seconds_per_megapixel_iteration: float | None = None,
                    start_seconds: float | None = None, now: float | None = None) -> None:  # fmt: skip
        """A worker's measurement: a job's pace, or how long it took to start."""
        values: dict[str, Any] = {":device": {"S": device}, ":at": {"N": _number(time.time() if now is None else now)}}
        expression = "SET device = :device, measuredAt = :at"
        if seconds_per_megapixel_iteration is not None:
            expression += ", secondsPerMegapixelIteration = :pace"
            values[":pace"] = {"N": f"{seconds_per_megapixel_iteration:.6g}"}
        if start_seconds is not None:
            expression += ", startSeconds = :start"
            values[":start"] = {"N": f"{start_seconds:.3f}"}
        self.dynamodb.update_item(
            TableName=self.table, Key={"workerId": {"S": PACE_KEY}}, UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )  # fmt: skip

    # --- the jobs waiting ---------------------------------------------------------------------

    def arrived(self) -> int:
        """One more job waits (a new one, or one a gone worker held); how many wait now."""
        updated = self.dynamodb.update_item(
            TableName=self.table,
            Key={"workerId": {"S": QUEUE_KEY}},
            UpdateExpression="ADD waiting :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(updated["Attributes"]["waiting"]["N"])

    def taken(self) -> None:
        """A worker took a job's message off the queue (to paint it, or because it was over)."""
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"workerId": {"S": QUEUE_KEY}},
                UpdateExpression="ADD waiting :less",
                ConditionExpression="waiting > :zero",  # never below zero: a copy nobody counted
                ExpressionAttributeValues={":less": {"N": "-1"}, ":zero": {"N": "0"}},
            )

    def at_most_waiting(self, most: int) -> None:
        """No more than `most` jobs can be waiting (what the queue holds): a message that left it
        unseen (expired after its retention) is no longer counted."""
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"workerId": {"S": QUEUE_KEY}},
                UpdateExpression="SET waiting = :most",
                ConditionExpression="waiting > :most",
                ExpressionAttributeValues={":most": {"N": str(most)}},
            )

    # --- the scaler's transitions -----------------------------------------------------------

    def reserve(self, worker_id: str, desired: int, start_seconds: float, now: float | None = None) -> bool:
        """A STARTING worker's item and its count, if the pool has fewer than `desired` workers;
        False if it has that many already (another scaler may have started one meanwhile)."""
        now = time.time() if now is None else now
        item = {
            "workerId": {"S": worker_id},
            "status": {"S": STARTING},
            "leaseUntil": {"N": _number(now + start_seconds)},
            "startedAt": {"N": _number(now)},
            "jobsDone": {"N": "0"},
            "expiresAt": {"N": str(int(now) + EXPIRE_AFTER_SECONDS)},
        }
        count = {
            "TableName": self.table,
            "Key": {"workerId": {"S": POOL_KEY}},
            "UpdateExpression": "SET workers = if_not_exists(workers, :zero) + :one",
            "ConditionExpression": "attribute_not_exists(workers) OR workers < :desired",
            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}, ":desired": {"N": str(desired)}},
        }
        put = {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(workerId)"}
        return self._transact([{"Update": count}, {"Put": put}])

    def submitted(self, worker_id: str, batch_job_id: str) -> None:
        """The Batch job that runs a reserved worker (kept for reaping: why it did not start)."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"workerId": {"S": worker_id}},
            UpdateExpression="SET batchJobId = :job",
            ConditionExpression="attribute_exists(workerId)",
            ExpressionAttributeValues={":job": {"S": batch_job_id}},
        )

    def reap(self, worker: Worker) -> bool:
        """Forget a worker whose lease lapsed, as it was seen (a renewal since then keeps it)."""
        seen = {":seen": {"N": _number(worker.lease_until)}}
        return self._remove(worker.worker_id, {"#l": "leaseUntil"}, "#l = :seen", seen)

    def release(self, worker_id: str) -> bool:
        """Forget a worker whatever its lease (its start failed; its Batch job ended)."""
        return self._remove(worker_id)

    def record_start_failure(self, reason: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"workerId": {"S": POOL_KEY}},
            UpdateExpression="SET startFailure = :why, startFailureAt = :at",
            ExpressionAttributeValues={":why": {"S": reason[:500]}, ":at": {"N": _number(now)}},
        )

    # --- a worker's own transitions ---------------------------------------------------------

    def renew(
        self,
        worker_id: str,
        status: str,
        lease_seconds: float,
        job: tuple[str, str] | None = None,
        jobs_done: int | None = None,
        now: float | None = None,
    ) -> bool:
        """The worker is alive, in `status`, until now + lease_seconds; BUSY with `job` (its jobId
        and the work queue's receipt handle). False if its item is gone: it was reaped (its lease
        had lapsed) and no longer counts, so it must take no more jobs."""
        now = time.time() if now is None else now
        values: dict[str, Any] = {":status": {"S": status}, ":until": {"N": _number(now + lease_seconds)}}
        expression = "SET #s = :status, leaseUntil = :until"
        if job is not None:
            expression += ", jobId = :job, receiptHandle = :receipt"
            values |= {":job": {"S": job[0]}, ":receipt": {"S": job[1]}}
        if jobs_done is not None:
            expression += ", jobsDone = :done"
            values[":done"] = {"N": str(jobs_done)}
        if job is None:
            expression += " REMOVE jobId, receiptHandle"
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"workerId": {"S": worker_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(workerId)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def came_up(self) -> None:
        """A worker is ready: whatever kept the last ones from starting is over."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"workerId": {"S": POOL_KEY}},
            UpdateExpression="REMOVE startFailure, startFailureAt",
        )

    def retire(self, worker_id: str, keep: int) -> bool:
        """An idle worker leaves, unless that would leave fewer than `keep` (MinWarmWorkers) or a
        job waits: a job that arrived as it was about to leave was counted before the scaler saw
        it idle (and started no other worker for it), so it must stay and take that job."""
        nothing_waits = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": {"workerId": {"S": QUEUE_KEY}},
                "ConditionExpression": "attribute_not_exists(waiting) OR waiting <= :zero",
                "ExpressionAttributeValues": {":zero": {"N": "0"}},
            }
        }
        pool_condition = ("workers > :keep", {":keep": {"N": str(keep)}})
        return self._remove(worker_id, pool_condition=pool_condition, also=[nothing_waits])

    # --- transactions -----------------------------------------------------------------------

    def _remove(
        self,
        worker_id: str,
        names: dict[str, str] | None = None,
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        pool_condition: tuple[str, dict[str, Any]] | None = None,
        also: list[dict[str, Any]] | None = None,
    ) -> bool:
        delete: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"workerId": {"S": worker_id}},
            "ConditionExpression": "attribute_exists(workerId)" + (f" AND {condition}" if condition else ""),
        }
        if names:
            delete["ExpressionAttributeNames"] = names
        if values:
            delete["ExpressionAttributeValues"] = values
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"workerId": {"S": POOL_KEY}},
            "UpdateExpression": "SET workers = workers - :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
        if pool_condition is not None:
            update["ConditionExpression"] = pool_condition[0]
            update["ExpressionAttributeValues"] |= pool_condition[1]
        return self._transact([{"Delete": delete}, {"Update": update}, *(also or [])])

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        try:
            self.dynamodb.transact_write_items(TransactItems=items)
        except self.dynamodb.exceptions.TransactionCanceledException as cancelled:
            reasons = [r.get("Code") for r in cancelled.response.get("CancellationReasons", [])]
            if any(code not in ("None", "ConditionalCheckFailed", None) for code in reasons):
                raise  # a conflict with another transaction, throttling: the caller's retry decides
            return False
        return True


def _number(value: float) -> str:
    return f"{value:.3f}"


def _pace(item: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"device": item.get("device", {}).get("S")}
    for name in ("secondsPerMegapixelIteration", "startSeconds", "measuredAt"):
        if name in item:
            found[name] = float(item[name]["N"])
    return found


def _worker(item: dict[str, Any]) -> Worker:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return Worker(
        worker_id=item["workerId"]["S"],
        status=item.get("status", {}).get("S", STARTING),
        lease_until=float(item.get("leaseUntil", {}).get("N", "0")),
        batch_job_id=text("batchJobId"),
        job_id=text("jobId"),
        receipt_handle=text("receiptHandle"),
        jobs_done=int(item.get("jobsDone", {}).get("N", "0")),
    )
