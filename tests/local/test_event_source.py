"""The SQS event source mapping: the results queue's messages reach the real NotifyFunction in
batches of Lambda's shape, and what fails comes back after the visibility timeout."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel
from stylelocal.event_source import SqsEventSource, SqsMapping, sqs_mapping
from stylelocal.template import resources
from styleservice.jobs import Jobs
from websockets.sync.client import connect

from . import runtime_fixtures
from .runtime_fixtures import RecordingRuntime, probe_function, wait_for

gateway, logs, recording, site = (
    runtime_fixtures.gateway,
    runtime_fixtures.logs,
    runtime_fixtures.recording,
    runtime_fixtures.site,
)  # fixtures

JOB = "5f1c0d2e9a8b4c7d8e6f5a4b3c2d1e0f"

# Fails the records whose body says so, or the whole invocation.
PARTIAL = """
def handler(event, context):
    failures = []
    for record in event["Records"]:
        if record["body"] == "raise":
            raise RuntimeError("the whole batch fails")
        if record["body"] == "fail":
            failures.append({"itemIdentifier": record["messageId"]})
        if record["body"] == "invalid":
            failures.append({"itemIdentifier": ""})
    return {"batchItemFailures": failures}
"""


def queue_url(aws) -> str:
    return aws.refs["ResultsQueue"]


def short_visibility(aws, seconds: int = 1) -> None:
    aws.client("sqs").set_queue_attributes(QueueUrl=queue_url(aws), Attributes={"VisibilityTimeout": str(seconds)})


def queue_is_empty(aws) -> bool:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(aws),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def send(aws, *bodies: str | dict[str, Any], **extra: Any) -> list[str]:
    sqs = aws.client("sqs")
    return [
        sqs.send_message(
            QueueUrl=queue_url(aws), MessageBody=body if isinstance(body, str) else json.dumps(body), **extra
        )["MessageId"]
        for body in bodies
    ]


def seed_job(aws, connection_id: str, private: bool = False) -> None:
    area = "private" if private else "public"
    Jobs(aws.refs["JobsTable"]).create(
        {
            "jobId": JOB,
            "connectionId": connection_id,
            "tokenHash": hashlib.sha256(b"token").hexdigest(),
            "isPrivate": private,
            "inputKey": f"{area}/input/{JOB}.jpg",
            "style": "swirls",
            "styleKey": "styles/swirls.jpg",
            "outputKey": f"{area}/output/{JOB}.jpg",
            "options": {"preset": "preview", "size": None, "strength": 0.5},
        }
    )


def completed() -> dict[str, str]:
    return {"type": "completed", "requestId": JOB, "resultKey": f"public/output/{JOB}.jpg"}


@pytest.fixture
def notify_source(aws, recording) -> Iterator[SqsEventSource]:
    source = SqsEventSource(recording, aws)
    yield source
    source.stop()


def partial_mapping(aws, tmp_path, **changes: Any) -> tuple[Any, SqsMapping]:
    function = probe_function(tmp_path / "functions", "PartialFunction", "handler", code=PARTIAL)
    mapping = SqsMapping(
        function="PartialFunction",
        event_name="Results",
        queue_arn=aws.attributes[("ResultsQueue", "Arn")],
        batch_size=10,
        batching_window=0,
        report_batch_item_failures=True,
        enabled=True,
    )
    return function, SqsMapping(**{**mapping.__dict__, **changes})


def receive_all(aws, expected: int) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < expected and time.monotonic() < deadline:
        found += sqs.receive_message(
            QueueUrl=queue_url(aws), MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
    assert len(found) == expected
    return found


# --- the mapping ----------------------------------------------------------------------------------


def test_the_mapping_is_the_template_event_of_notify(aws):
    mapping = sqs_mapping(aws, "NotifyFunction")
    assert mapping == SqsMapping(
        function="NotifyFunction",
        event_name="Results",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:ResultsQueue",
        batch_size=10,
        batching_window=0.0,
        report_batch_item_failures=True,
        enabled=True,
    )
    template_event = resources()["NotifyFunction"]["Properties"]["Events"]["Results"]["Properties"]
    assert template_event["Queue"] == {"Fn::GetAtt": ["ResultsQueue", "Arn"]}
    with pytest.raises(ValueError, match="0 SQS events"):
        sqs_mapping(aws, "ConnectFunction")


# --- the real NotifyFunction ------------------------------------------------------------------------


def test_a_completed_job_reaches_its_client_through_notify_and_the_gateway(aws, gateway, recording, notify_source):
    with connect(gateway.ws_url) as requester:
        (requester_id,) = wait_for(gateway.connection_ids)
        with connect(gateway.ws_url) as watcher:
            assert wait_for(lambda: len(gateway.connection_ids()) == 2)
            seed_job(aws, requester_id)
            (message_id,) = send(aws, completed())
            notify_source.start()
            own = json.loads(requester.recv(timeout=15))
            broadcast = [json.loads(requester.recv(timeout=15)), json.loads(watcher.recv(timeout=15))]

    result_url = f"https://cdn.local.test/public/output/{JOB}.jpg"
    assert own == {"event": f"TRANSFER_STYLE_COMPLETED::{JOB}", "data": {"result": result_url}}
    for pushed in broadcast:
        assert pushed["event"] == "TRANSFER_STYLE_COMPLETED"
        assert pushed["data"]["jobId"] == JOB
        assert pushed["data"]["result"] == result_url
    assert Jobs(aws.refs["JobsTable"]).get(JOB)["status"] == "SUCCEEDED"
    assert wait_for(lambda: queue_is_empty(aws))  # the record was deleted

    (event,) = recording.events_of("NotifyFunction")
    (record,) = SqsModel.model_validate(event).Records
    assert record.messageId == message_id
    assert record.eventSource == "aws:sqs"
    assert record.eventSourceARN == "arn:aws:sqs:us-east-1:123456789012:ResultsQueue"
    assert record.awsRegion == "us-east-1"
    assert record.md5OfBody == hashlib.md5(json.dumps(completed()).encode()).hexdigest()
    raw = event["Records"][0]
    assert set(raw["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert raw["attributes"]["ApproximateReceiveCount"] == "1"
    assert set(raw) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }


def test_a_failed_record_comes_back_after_the_visibility_timeout(aws, gateway, recording, notify_source):
    # Long enough for a batch to be gathered (1 s window) and delivered before its messages
    # reappear: Lambda asks for a visibility timeout of at least the function's timeout.
    short_visibility(aws, 3)
    recording.warm(["NotifyFunction"])
    dynamodb = aws.client("dynamodb")
    idempotency = dynamodb.describe_table(TableName="IdempotencyTable")["Table"]
    dynamodb.delete_table(TableName="IdempotencyTable")  # a transient failure of the delivery
    with connect(gateway.ws_url) as requester:
        (requester_id,) = wait_for(gateway.connection_ids)
        seed_job(aws, requester_id)
        malformed, done = send(aws, "not json", completed())
        notify_source.start()

        assert wait_for(lambda: recording.results_of("NotifyFunction"))
        first_event, first_result = recording.results_of("NotifyFunction")[0]
        assert {r["messageId"] for r in first_event["Records"]} == {malformed, done}  # one batch
        assert first_result == {"batchItemFailures": [{"itemIdentifier": done}]}
        dynamodb.create_table(
            TableName="IdempotencyTable",
            AttributeDefinitions=idempotency["AttributeDefinitions"],
            KeySchema=idempotency["KeySchema"],
            BillingMode="PAY_PER_REQUEST",
        )
        own = json.loads(requester.recv(timeout=20))  # redelivered and delivered now

    assert own["event"] == f"TRANSFER_STYLE_COMPLETED::{JOB}"
    assert wait_for(lambda: len(recording.results_of("NotifyFunction")) >= 2)  # that invocation returned
    later = [event for event, _ in recording.results_of("NotifyFunction")[1:]]
    redelivered = [r for event in later for r in event["Records"]]
    assert {r["messageId"] for r in redelivered} == {done}  # the dropped one was deleted
    assert int(redelivered[-1]["attributes"]["ApproximateReceiveCount"]) >= 2
    (first_try,) = [r for r in first_event["Records"] if r["messageId"] == done]
    first_received = first_try["attributes"]["ApproximateFirstReceiveTimestamp"]
    assert redelivered[0]["attributes"]["ApproximateFirstReceiveTimestamp"] == first_received
    assert wait_for(lambda: queue_is_empty(aws))


# --- the mapping's rules, with a function made for them -------------------------------------------------


@pytest.mark.parametrize(
    ("bodies", "left"),
    [
        (["ok", "fail", "ok"], ["fail"]),  # only the reported item stays
        (["ok", "raise"], ["ok", "raise"]),  # an invocation error keeps the whole batch
        (["ok", "invalid"], ["ok", "invalid"]),  # an invalid failure report counts as a batch failure
        (["ok", "ok"], []),
    ],
)
def test_what_is_deleted_after_an_invocation(aws, logs, tmp_path, bodies, left):
    short_visibility(aws)
    function, mapping = partial_mapping(aws, tmp_path)
    ids = send(aws, *bodies)
    with RecordingRuntime(aws, logs=logs, functions=[function]) as runtime:
        source = SqsEventSource(runtime, aws, mapping=mapping)
        messages = receive_all(aws, len(bodies))
        kept = source.deliver(messages)
    by_id = dict(zip(ids, bodies, strict=True))
    assert sorted(by_id[i] for i in kept) == sorted(left)
    again = receive_all(aws, len(left)) if left else []  # back after the visibility timeout
    assert sorted(m["MessageId"] for m in again) == sorted(kept)
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "2" for m in again)
    assert source.stats["deleted"] == len(bodies) - len(left)


def test_without_report_batch_item_failures_a_returned_list_is_ignored(aws, logs, tmp_path):
    function, mapping = partial_mapping(aws, tmp_path, report_batch_item_failures=False)
    send(aws, "ok", "fail")
    with RecordingRuntime(aws, logs=logs, functions=[function]) as runtime:
        kept = SqsEventSource(runtime, aws, mapping=mapping).deliver(receive_all(aws, 2))
    assert kept == []
    assert queue_is_empty(aws)


def test_batches_hold_at_most_batch_size_records_and_every_message_once(aws, logs, tmp_path):
    function, mapping = partial_mapping(aws, tmp_path, batch_size=10, batching_window=0.5)
    ids = send(aws, *[f"message {i}" for i in range(25)])
    with RecordingRuntime(aws, logs=logs, functions=[function]) as runtime:
        runtime.warm(["PartialFunction"])
        with SqsEventSource(runtime, aws, mapping=mapping):
            assert wait_for(lambda: sum(len(e["Records"]) for e in runtime.events_of("PartialFunction")) >= 25)
        sizes = [len(event["Records"]) for event in runtime.events_of("PartialFunction")]
        delivered = [r["messageId"] for event in runtime.events_of("PartialFunction") for r in event["Records"]]
    assert max(sizes) <= 10
    assert sorted(delivered) == sorted(ids)
    assert len(sizes) <= 5  # gathered into batches, not one invocation per message
    assert wait_for(lambda: queue_is_empty(aws))


def test_a_lone_message_waits_for_the_batching_window(aws, logs, tmp_path):
    function, mapping = partial_mapping(aws, tmp_path, batching_window=1.0)
    with RecordingRuntime(aws, logs=logs, functions=[function]) as runtime:
        runtime.warm(["PartialFunction"])
        with SqsEventSource(runtime, aws, mapping=mapping):
            sent = time.monotonic()
            send(aws, "alone")
            assert wait_for(lambda: runtime.events_of("PartialFunction"))
            waited = time.monotonic() - sent
    assert 0.9 <= waited < 5


def test_message_attributes_take_lambdas_shape(aws, logs, tmp_path):
    function, mapping = partial_mapping(aws, tmp_path)
    attributes = {
        "kind": {"DataType": "String", "StringValue": "progress"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    send(aws, "ok", MessageAttributes=attributes)
    with RecordingRuntime(aws, logs=logs, functions=[function]) as runtime:
        source = SqsEventSource(runtime, aws, mapping=mapping)
        message = aws.client("sqs").receive_message(
            QueueUrl=queue_url(aws),
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )["Messages"]
        source.deliver(message)
        (event,) = runtime.events_of("PartialFunction")
    record = event["Records"][0]
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "progress", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    assert record["md5OfMessageAttributes"] == message[0]["MD5OfMessageAttributes"]
    SqsModel.model_validate(event)


def test_stop_is_prompt_when_idle(aws, recording):
    source = SqsEventSource(recording, aws).start()
    time.sleep(0.2)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 3
