"""Lambda's SQS event source mapping, locally: a queue's messages delivered to a function in
batches, as the template's `Events: {Type: SQS}` declares.

`SqsEventSource(runtime, aws, function="NotifyFunction")` reads the function's SQS event in
template.yaml: the queue (`Queue: !GetAtt X.Arn`, resolved against the local AWS and turned into
the queue's URL), `BatchSize` (default 10), `MaximumBatchingWindowInSeconds` (default 0),
`FunctionResponseTypes` and `Enabled`. Then, like Lambda's pollers:

- it long-polls the queue; once a message arrives it keeps gathering until the batch is full,
  the batching window has passed, or the payload nears Lambda's 6 MB;
- it invokes the function (through the `LambdaRuntime`, synchronously) with an SQS event of
  Lambda's exact shape: `Records` of messageId, receiptHandle, body, attributes
  (ApproximateReceiveCount, SentTimestamp, SenderId, ApproximateFirstReceiveTimestamp, ...),
  messageAttributes, md5OfBody, eventSource "aws:sqs", eventSourceARN, awsRegion;
- a successful invocation deletes its records, except, with ReportBatchItemFailures, those the
  function lists in `batchItemFailures`; an invocation that failed (an error, a timeout) or
  returned an invalid failure list deletes nothing. What is not deleted becomes visible again
  after the queue's visibility timeout and is delivered again (the queue's redrive policy, in
  moto, moves it to the dead-letter queue after maxReceiveCount receives).

`start()` starts the pollers (threads), `stop()` stops them after their current batch.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .lambdas import FunctionError, LambdaRuntime

logger = logging.getLogger(__name__)

# Attributes Lambda passes on in a record's `attributes` (the last three for FIFO queues only).
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload
DEFAULT_POLLERS = 2


def _template() -> Any:
    from . import template

    return template


@dataclass(frozen=True)
class SqsMapping:
    """A function's SQS event from template.yaml, resolved."""

    function: str
    event_name: str
    queue_arn: str
    batch_size: int
    batching_window: float
    report_batch_item_failures: bool
    enabled: bool

    @property
    def region(self) -> str:
        return self.queue_arn.split(":")[3]

    @property
    def queue_name(self) -> str:
        return self.queue_arn.rsplit(":", 1)[1]


def sqs_mapping(aws: Any, function: str, event_name: str | None = None) -> SqsMapping:
    """The function's SQS event (the only one, or `event_name`) with its values resolved."""
    events = {
        name: event
        for name, event in (_template().function(function).get("Events") or {}).items()
        if event.get("Type") == "SQS"
    }
    if event_name is None:
        if len(events) != 1:
            raise ValueError(f"{function} has {len(events)} SQS events in template.yaml: name the one to run")
        event_name = next(iter(events))
    props = aws.resolve(events[event_name]["Properties"])
    return SqsMapping(
        function=function,
        event_name=event_name,
        queue_arn=str(props["Queue"]),
        batch_size=int(props.get("BatchSize", 10)),
        batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        enabled=bool(props.get("Enabled", True)),
    )


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One SQS message as a record of Lambda's SQS event."""
    system = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: system[name] for name in _RECORD_ATTRIBUTES if name in system},
        "messageAttributes": {
            name: _message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # The SQS API's PascalCase attribute becomes Lambda's camelCase one; binary values are base64.
    converted: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return converted


class SqsEventSource:
    """Polls the function's queue and invokes it with batches (see the module docstring).

    `pollers` concurrent batches at most (Lambda starts with several pollers too);
    `wait_seconds` is the long poll's length, which also bounds how long `stop()` waits for an
    idle poller. `mapping` replaces what the template says (for functions outside it)."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        aws: Any,
        function: str = "NotifyFunction",
        *,
        event_name: str | None = None,
        pollers: int = DEFAULT_POLLERS,
        wait_seconds: int = 1,
        mapping: SqsMapping | None = None,
    ) -> None:
        self.runtime = runtime
        self.aws = aws
        self.mapping = mapping or sqs_mapping(aws, function, event_name)
        self.pollers = pollers
        self.wait_seconds = wait_seconds
        self._sqs = aws.client("sqs")
        self.queue_url: str = self._sqs.get_queue_url(QueueName=self.mapping.queue_name)["QueueUrl"]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.stats = {"batches": 0, "records": 0, "deleted": 0, "failed": 0, "errors": 0}

    def start(self) -> SqsEventSource:
        if not self.mapping.enabled or self._threads:
            return self
        self._check_visibility()
        self._stopping.clear()
        for number in range(self.pollers):
            thread = threading.Thread(target=self._poll, name=f"sqs-{self.mapping.function}-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling; a batch being delivered finishes first (its invocation is bounded by the
        function's timeout)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def __enter__(self) -> SqsEventSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check_visibility(self) -> None:
        # Lambda refuses a mapping whose queue hides a message for less than the function may run:
        # the message would reappear, and be delivered twice, while its batch is still running.
        visibility = int(
            self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"][
                "VisibilityTimeout"
            ]
        )
        timeout = self.runtime.config(self.mapping.function).timeout
        if visibility < timeout:
            logger.warning(
                "%s: visibility timeout %d s is less than %s's timeout %.0f s (Lambda would refuse this mapping)",
                self.mapping.queue_name,
                visibility,
                self.mapping.function,
                timeout,
            )

    # --- polling ------------------------------------------------------------------------------

    def _poll(self) -> None:
        sqs = self.aws.client("sqs")  # a client per thread: each has its own connection pool
        while not self._stopping.is_set():
            try:
                messages = self._gather(sqs)
                if messages:
                    self.deliver(messages, sqs)
            except Exception:  # moto unreachable, e.g. while everything stops: retry shortly
                if self._stopping.is_set():
                    return
                logger.exception("polling %s failed", self.mapping.queue_name)
                with self._lock:
                    self.stats["errors"] += 1
                self._stopping.wait(1.0)

    def _receive(self, sqs: Any, count: int, wait: int) -> list[dict[str, Any]]:
        answer = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return answer.get("Messages", [])

    def _gather(self, sqs: Any) -> list[dict[str, Any]]:
        """A batch: the first messages of a long poll, then more until the batch is full, the
        batching window is over or the payload nears 6 MB."""
        size = self.mapping.batch_size
        messages = self._receive(sqs, size, self.wait_seconds)
        if not messages:
            return []
        deadline = time.monotonic() + self.mapping.batching_window
        payload = sum(len(m["Body"]) for m in messages)
        while len(messages) < size and payload < MAX_PAYLOAD_BYTES - 1024 * 1024 and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(sqs, size - len(messages), 0)
            if more:
                messages.extend(more)
                payload += sum(len(m["Body"]) for m in more)
            else:
                time.sleep(min(0.05, remaining))
        return messages

    def deliver(self, messages: Iterable[dict[str, Any]], sqs: Any | None = None) -> list[str]:
        """Invoke the function with these received messages and delete those that succeeded;
        returns the ids of the messages left for redelivery."""
        sqs = sqs or self._sqs
        messages = list(messages)
        event = {"Records": [sqs_record(m, self.mapping.queue_arn) for m in messages]}
        ids = [m["MessageId"] for m in messages]
        result = self.runtime.invoke(self.mapping.function, event)
        failed = self._failures(result, ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            answer = sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in answer.get("Failed", []):
                logger.warning("could not delete a message of %s: %s", self.mapping.queue_name, failure)
        with self._lock:
            self.stats["batches"] += 1
            self.stats["records"] += len(messages)
            self.stats["deleted"] += len(done)
            self.stats["failed"] += len(failed)
        return [i for i in ids if i in failed]

    def _failures(self, result: Any, ids: list[str]) -> set[str]:
        """The message ids that are not to be deleted, as Lambda reads the function's answer."""
        if isinstance(result, FunctionError):
            logger.warning("%s failed on a batch of %d: %s", self.mapping.function, len(ids), result.message)
            return set(ids)
        if not self.mapping.report_batch_item_failures or result is None:
            return set()
        if not isinstance(result, dict):
            return set()  # Lambda ignores a response it cannot read as batch item failures
        items = result.get("batchItemFailures")
        if not items:
            return set()
        failed = set()
        for item in items:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not isinstance(identifier, str) or identifier not in ids:
                # an empty, null or unknown identifier: Lambda counts the whole batch as failed
                logger.warning("%s returned an invalid batch item failure %r", self.mapping.function, item)
                return set(ids)
            failed.add(identifier)
        return failed


__all__ = ["SqsEventSource", "SqsMapping", "sqs_mapping", "sqs_record"]
