"""A work item a worker holds: the job, the state machine's task token and the work queue's
message, and every call that answers for them.

The message stays invisible to other workers while this one renews it (`heartbeat`, every third
of the lease); if the worker dies, it becomes visible again when the lease lapses (or at once, when
the scaler forgets the worker) and another worker takes the job. The job item counts the attempts
(`claim`): a job that has stopped its worker MaxAttempts times is failed rather than run again,
so a poison job cannot take the pool down with it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stylejob.job import WORKER_LOST, WorkItem

# SendTask*'s errors for a token the state machine no longer waits on: the task timed out or was
# answered, or the execution was stopped (its job cancelled) or never had this token.
STALE_TOKEN = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")
# On SIGTERM a job that will be done within this many seconds is finished; a longer one is handed
# back. Well inside the grace before SIGKILL (30 s in Batch, 10 s in the local Batch runner).
FINISH_WITHIN_SECONDS = 5.0


class TaskLost(Exception):  # noqa: N818 - not an error of the worker's: the job is no longer its
    """The state machine no longer waits for this task: stop painting, answer nothing."""


class HandBack(Exception):  # noqa: N818 - a decision, not an error
    """The worker must stop and this job would not finish in time: give it back to the queue."""


CLAIMED, EXHAUSTED, OVER, HELD = "claimed", "exhausted", "over", "held"


@dataclass
class Clients:
    sqs: Any
    states: Any
    dynamodb: Any  # the low-level client: the jobs table and the workers table
    work_queue_url: str
    jobs_table: str


class Task:
    def __init__(self, item: WorkItem, receipt: str, clients: Clients, worker_id: str, lease_seconds: float) -> None:
        self.job = item.job
        self.token = item.task_token
        self.receipt = receipt
        self.clients = clients
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.attempt = 0
        self.held_until = 0.0  # when another worker's claim lapses (epoch s), if it holds the job
        self.lost = threading.Event()  # the token went stale while the job ran
        self.stopping: Callable[[], bool] = lambda: False  # set by the worker: SIGTERM received

    # --- the job item's attempts --------------------------------------------------------------

    def claim(self, max_attempts: int) -> str:
        """Count this attempt on the job item: CLAIMED (go on), EXHAUSTED (the job has used its
        attempts: fail it), OVER (the job ended) or HELD (another worker holds it, and its claim
        has not lapsed: a second copy of the message, or a worker not yet known to be gone)."""
        now = time.time()
        dynamodb = self.clients.dynamodb
        try:
            updated = dynamodb.update_item(
                TableName=self.clients.jobs_table,
                Key={"jobId": {"S": self.job.job_id}},
                UpdateExpression="SET attempts = if_not_exists(attempts, :zero) + :one, workerId = :me, "
                "claimedUntil = :until",
                ConditionExpression="attribute_exists(jobId) AND #s = :running "
                "AND (attribute_not_exists(attempts) OR attempts < :most) "
                "AND (attribute_not_exists(claimedUntil) OR claimedUntil < :now OR workerId = :me)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"}, ":one": {"N": "1"}, ":me": {"S": self.worker_id},
                    ":until": {"N": f"{now + self.lease_seconds:.3f}"}, ":running": {"S": "RUNNING"},
                    ":most": {"N": str(max_attempts)}, ":now": {"N": f"{now:.3f}"},
                },
                ReturnValues="UPDATED_NEW",
            )  # fmt: skip
        except dynamodb.exceptions.ConditionalCheckFailedException:
            item = dynamodb.get_item(
                TableName=self.clients.jobs_table, Key={"jobId": {"S": self.job.job_id}}, ConsistentRead=True
            ).get("Item", {})
            if item.get("status", {}).get("S") != "RUNNING":
                return OVER
            self.held_until = float(item.get("claimedUntil", {}).get("N", "0"))
            return EXHAUSTED if int(item.get("attempts", {}).get("N", "0")) >= max_attempts else HELD
        self.attempt = int(updated["Attributes"]["attempts"]["N"])
        return CLAIMED

    # --- while it runs --------------------------------------------------------------------------

    def heartbeat(self) -> bool:
        """Tell the state machine and the queue that the job is alive; False (and `lost` set) if
        the state machine no longer waits for it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.clients.states.send_task_heartbeat(taskToken=self.token)
        except ClientError as failure:
            if failure.response.get("Error", {}).get("Code") in STALE_TOKEN:
                self.lost.set()
                return False
            raise
        try:
            self.clients.sqs.change_message_visibility(
                QueueUrl=self.clients.work_queue_url,
                ReceiptHandle=self.receipt,
                VisibilityTimeout=round(self.lease_seconds),
            )
            if self.attempt:
                self.clients.dynamodb.update_item(
                    TableName=self.clients.jobs_table,
                    Key={"jobId": {"S": self.job.job_id}},
                    UpdateExpression="SET claimedUntil = :until",
                    ConditionExpression="workerId = :me",
                    ExpressionAttributeValues={
                        ":until": {"N": f"{time.time() + self.lease_seconds:.3f}"}, ":me": {"S": self.worker_id},
                    },
                )  # fmt: skip
        except (ClientError, BotoCoreError):  # the next beat may get through; the lease is 3 beats long
            return True
        return True

    def checkpoint(self, done: float, seconds: float) -> None:
        """Called on every iteration: stop a job that is no longer this worker's, and hand back
        one that will not finish soon when the worker must stop."""
        if self.lost.is_set():
            raise TaskLost(self.job.job_id)
        if self.stopping() and done > 0 and seconds / done * (1 - done) > FINISH_WITHIN_SECONDS:
            raise HandBack(self.job.job_id)

    # --- its end --------------------------------------------------------------------------------

    def succeed(self, output: str) -> None:
        self._answer(lambda: self.clients.states.send_task_success(taskToken=self.token, output=output))

    def fail(self, error: str, cause: str) -> None:
        self._answer(lambda: self.clients.states.send_task_failure(taskToken=self.token, error=error, cause=cause))

    def exhausted(self, max_attempts: int) -> None:
        self.fail(
            WORKER_LOST,
            f"the style transfer stopped its GPU worker {max_attempts} times, so it was not tried again; "
            "a smaller size or another image may work",
        )

    def hand_back(self) -> None:
        """Give the job back: not counted as an attempt, visible to other workers at once."""
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):  # if not, it stays counted: one attempt fewer for the job
            self.clients.dynamodb.update_item(
                TableName=self.clients.jobs_table,
                Key={"jobId": {"S": self.job.job_id}},
                UpdateExpression="SET attempts = attempts - :one REMOVE workerId, claimedUntil",
                ConditionExpression="workerId = :me AND attempts > :zero",
                ExpressionAttributeValues={":one": {"N": "1"}, ":me": {"S": self.worker_id}, ":zero": {"N": "0"}},
            )
        with contextlib.suppress(ClientError):  # if not, its lease lapses a little later
            self.clients.sqs.change_message_visibility(
                QueueUrl=self.clients.work_queue_url, ReceiptHandle=self.receipt, VisibilityTimeout=0
            )

    def later(self) -> None:
        """Leave the message to come back once the holder's claim would have lapsed: by then its
        worker has finished the job (the copy is then over) or is gone (the job is then ours)."""
        from botocore.exceptions import ClientError

        seconds = max(1, min(43_200, round(self.held_until - time.time()) + 1))
        with contextlib.suppress(ClientError):
            self.clients.sqs.change_message_visibility(
                QueueUrl=self.clients.work_queue_url, ReceiptHandle=self.receipt, VisibilityTimeout=seconds
            )

    def done(self) -> None:
        """The message is answered for (or not worth keeping): off the queue."""
        self.clients.sqs.delete_message(QueueUrl=self.clients.work_queue_url, ReceiptHandle=self.receipt)

    def _answer(self, call: Callable[[], Any]) -> None:
        from botocore.exceptions import ClientError

        try:
            call()
        except ClientError as failure:
            if failure.response.get("Error", {}).get("Code") not in STALE_TOKEN:
                raise
            self.lost.set()  # answered by no one: the execution ended meanwhile
