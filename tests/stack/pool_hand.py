"""A stand-in for the pool's worker in the state machine's tests: it takes the work item that the
state machine's PaintOnWorker task sends (the job and its task token) off the work queue and
answers the token as a worker would, with whatever outcome the test wants."""

from __future__ import annotations

import json
import time
from typing import Any

from stylejob.job import TaskResult, WorkItem


class Hand:
    def __init__(self, aws: Any) -> None:
        self.sqs = aws.client("sqs")
        self.states = aws.client("stepfunctions")
        self.queue = aws.refs["WorkQueue"]

    def take(self, timeout: float = 20) -> WorkItem:
        """The next work item (the contract reads it: a malformed one fails the test)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=1).get("Messages", [])
            if received:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=received[0]["ReceiptHandle"])
                return WorkItem.model_validate_json(received[0]["Body"])
        raise AssertionError(f"no work item within {timeout} s")

    def nothing_queued(self) -> bool:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}

    def succeed(self, item: WorkItem, completed_at: int = 1_796_000_000_000) -> None:
        result = TaskResult(result_key=item.job.output_key, completed_at=completed_at, worker_id="hand", attempt=1)
        self.states.send_task_success(taskToken=item.task_token, output=result.output())

    def fail(self, item: WorkItem, error: str, cause: str) -> None:
        self.states.send_task_failure(taskToken=item.task_token, error=error, cause=cause)

    def heartbeat(self, item: WorkItem) -> None:
        self.states.send_task_heartbeat(taskToken=item.task_token)


def output(execution: dict[str, Any]) -> Any:
    return json.loads(execution.get("output") or "null")
