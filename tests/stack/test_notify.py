"""The notify function: results-queue messages become WebSocket pushes, against moto (tables, S3)
and a local @connections server that answers 410 for gone connections as API Gateway does."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from styleservice.connections import Connections
from styleservice.jobs import Jobs

from .connections_server import ConnectionsServer, connections_server  # noqa: F401 - a fixture
from .local_aws import EVENTS, LocalAws, event, sqs_event

FUNCTION = "NotifyFunction"
# The job ids the event files under events/notify/ refer to.
PUBLIC = "5f1c0d2e9a8b4c7d8e6f5a4b3c2d1e0f"
PRIVATE = "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
FAILING = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"
CDN = "https://cdn.local.test"


class Stack:
    """moto with the template's resources, the connections server, and seeding helpers."""

    def __init__(self, aws: LocalAws, server: ConnectionsServer) -> None:
        self.aws = aws
        self.server = server
        self.jobs = Jobs(aws.refs["JobsTable"])
        self.connections = Connections(aws.refs["ConnectionsTable"])
        self.bucket = aws.refs["ImagesBucket"]

    def connect(self, *connection_ids: str) -> None:
        """Connections that $connect recorded and that are open at API Gateway."""
        for connection_id in connection_ids:
            self.connections.add(connection_id)
        self.server.connect(*connection_ids)

    def job(self, job_id: str, connection_id: str, private: bool = False, **changes: Any) -> None:
        """A job as TRANSFER_STYLE creates it."""
        area = "private" if private else "public"
        self.jobs.create(
            {
                "jobId": job_id,
                "connectionId": connection_id,
                "tokenHash": hashlib.sha256(b"token").hexdigest(),
                "isPrivate": private,
                "inputKey": f"{area}/input/{job_id}.jpg",
                "style": "swirls",
                "styleKey": "styles/swirls.jpg",
                "outputKey": f"{area}/output/{job_id}.jpg",
                "options": {"preset": "preview", "size": None, "strength": 0.5},
                **changes,
            }
        )

    def invoke(self, payload: dict[str, Any] | str) -> dict[str, Any]:
        return self.aws.invoke(FUNCTION, payload)

    def connection_ids(self) -> set[str]:
        return set(self.connections.ids())


@pytest.fixture
def stack(aws: LocalAws, connections_server: ConnectionsServer, monkeypatch: pytest.MonkeyPatch) -> Stack:  # noqa: F811
    aws.overrides["WEBSOCKET_ENDPOINT"] = connections_server.endpoint
    # the tests' own boto3 calls (seeding, reading back) go to moto as the function's do
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    return Stack(aws, connections_server)


def completed(job_id: str, private: bool = False) -> dict[str, Any]:
    area = "private" if private else "public"
    return {"type": "completed", "requestId": job_id, "resultKey": f"{area}/output/{job_id}.jpg"}


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def events_of(server: ConnectionsServer, connection_id: str) -> list[str]:
    return [m["event"] for m in server.messages(connection_id)]


def test_private_result_goes_only_to_its_requester_as_a_presigned_url(stack: Stack):
    stack.connect("requester=", "stranger-1=", "stranger-2=")
    stack.job(PRIVATE, "requester=", private=True)
    stack.aws.client("s3").put_object(Bucket=stack.bucket, Key=f"private/output/{PRIVATE}.jpg", Body=b"result bytes")

    assert failures(stack.invoke("notify/completed_private.json")) == []

    [answer] = stack.server.messages("requester=")
    assert answer["event"] == f"TRANSFER_STYLE_COMPLETED::{PRIVATE}"
    url = answer["data"]["result"]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["900"]  # PRESIGNED_URL_SECONDS's default in the template
    assert "X-Amz-Signature" in query
    assert not url.startswith(CDN)
    download = requests.get(url, timeout=10)
    assert download.status_code == 200
    assert download.content == b"result bytes"
    assert stack.server.delivered().keys() == {"requester="}  # never broadcast
    job = stack.jobs.get(PRIVATE)
    assert job["status"] == "SUCCEEDED"
    assert job["resultKey"] == f"private/output/{PRIVATE}.jpg"
    assert "feed" not in job  # never listed by LIST_IMAGES


def test_public_result_reaches_its_requester_and_is_broadcast_to_everyone(stack: Stack):
    everyone = [f"viewer-{n:02d}=" for n in range(25)]
    stack.connect(*everyone)
    stack.job(PUBLIC, everyone[7])

    assert failures(stack.invoke("notify/completed_public.json")) == []

    job = stack.jobs.get(PUBLIC)
    assert job["status"] == "SUCCEEDED"
    assert job["feed"] == "public"
    result = f"{CDN}/public/output/{PUBLIC}.jpg"
    broadcast = {
        "event": "TRANSFER_STYLE_COMPLETED",
        "data": {
            "jobId": PUBLIC,
            "input": f"{CDN}/public/input/{PUBLIC}.jpg",
            "result": result,
            "style": "swirls",
            "completedAt": job["completedAt"],
        },
    }
    requester = stack.server.messages(everyone[7])
    assert {"event": f"TRANSFER_STYLE_COMPLETED::{PUBLIC}", "data": {"result": result}} in requester
    for connection_id in everyone:
        assert stack.server.messages(connection_id).count(broadcast) == 1, connection_id
    assert len(stack.server.delivered()) == 25
    assert sum(map(len, stack.server.delivered().values())) == 26  # 25 broadcasts + the requester's


def test_gone_connections_are_removed_from_the_connections_table(stack: Stack):
    stack.connect("requester=", "open=", "gone-1=", "gone-2=")
    stack.server.close("gone-1=", "gone-2=")  # their $disconnect never arrived
    stack.job(PUBLIC, "requester=")

    assert failures(stack.invoke("notify/completed_public.json")) == []

    assert stack.connection_ids() == {"requester=", "open="}
    assert ("POST", "gone-1=") in stack.server.requests
    assert stack.server.delivered().keys() == {"requester=", "open="}


def test_a_requester_gone_mid_job_is_not_an_error_and_the_result_stays_on_the_job(stack: Stack):
    stack.connect("requester=", "viewer=")
    stack.job(PUBLIC, "requester=")
    stack.server.close("requester=")

    assert failures(stack.invoke("notify/completed_public.json")) == []

    assert stack.connection_ids() == {"viewer="}
    job = stack.jobs.get(PUBLIC)
    assert (job["status"], job["resultKey"]) == ("SUCCEEDED", f"public/output/{PUBLIC}.jpg")
    assert events_of(stack.server, "viewer=") == ["TRANSFER_STYLE_COMPLETED"]


def test_a_redelivered_result_is_not_sent_twice(stack: Stack):
    stack.connect("requester=", "viewer=")
    stack.job(PUBLIC, "requester=")

    assert failures(stack.invoke("notify/completed_public.json")) == []
    # SQS delivers at least once: the same body again, as a new message, later and in one batch
    assert failures(stack.invoke(sqs_event(completed(PUBLIC), receive_count=2))) == []
    assert failures(stack.invoke(sqs_event(completed(PUBLIC), completed(PUBLIC)))) == []

    assert events_of(stack.server, "requester=") == [f"TRANSFER_STYLE_COMPLETED::{PUBLIC}", "TRANSFER_STYLE_COMPLETED"]
    assert events_of(stack.server, "viewer=") == ["TRANSFER_STYLE_COMPLETED"]


def forget_idempotency_records(stack: Stack, keep_deliveries_except: str | None = None) -> None:
    """What a notify process killed mid-delivery leaves: no completed idempotency record (its
    in-progress one expired), and delivery records only for the connections it reached."""
    table = stack.aws.client("dynamodb")
    name = stack.aws.refs["IdempotencyTable"]
    for item in table.scan(TableName=name)["Items"]:
        key = item["id"]["S"]
        if not key.startswith("delivered#") or (keep_deliveries_except and key.endswith(keep_deliveries_except)):
            table.delete_item(TableName=name, Key={"id": {"S": key}})


def test_a_delivery_that_died_is_finished_by_the_redelivery_without_repeating_a_push(stack: Stack):
    everyone = ("requester=", "reached=", "missed=")
    stack.connect(*everyone)
    stack.job(PUBLIC, "requester=")
    assert failures(stack.invoke(sqs_event(completed(PUBLIC)))) == []
    before = {c: len(stack.server.messages(c)) for c in everyone}
    assert before == {"requester=": 2, "reached=": 1, "missed=": 1}

    def since(connection_id: str) -> list[str]:
        return events_of(stack.server, connection_id)[before[connection_id] :]

    # the process "died" before its POST to missed= was recorded, after every other one was
    forget_idempotency_records(stack, keep_deliveries_except="#missed=")
    assert failures(stack.invoke(sqs_event(completed(PUBLIC), receive_count=2))) == []
    assert since("missed=") == ["TRANSFER_STYLE_COMPLETED"]  # the one push that may repeat
    assert since("requester=") == []
    assert since("reached=") == []
    before = {c: len(stack.server.messages(c)) for c in everyone}
    forget_idempotency_records(stack)  # now every connection has it: a redelivery sends nothing
    assert failures(stack.invoke(sqs_event(completed(PUBLIC), receive_count=3))) == []
    assert [since(c) for c in everyone] == [[], [], []]


def test_a_copy_that_races_a_delivery_in_flight_is_retried_later_and_then_not_sent(stack: Stack):
    stack.connect("requester=", "viewer=")
    stack.job(PUBLIC, "requester=")
    stack.server.hold("requester=")  # the first delivery stops at its POST to the requester
    original, duplicate = sqs_event(completed(PUBLIC)), sqs_event(completed(PUBLIC))

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(stack.invoke, original)
        assert stack.server.wait_until_held("requester=")
        # the same message, delivered twice at once (SQS is at least once): Idempotency finds the
        # first still in progress, so this copy fails and SQS will redeliver it
        assert failures(stack.invoke(duplicate)) == [duplicate["Records"][0]["messageId"]]
        stack.server.release("requester=")
        assert failures(first.result(timeout=30)) == []

    assert failures(stack.invoke(duplicate)) == []  # redelivered: the first finished, nothing to send
    assert events_of(stack.server, "requester=") == [f"TRANSFER_STYLE_COMPLETED::{PUBLIC}", "TRANSFER_STYLE_COMPLETED"]
    assert events_of(stack.server, "viewer=") == ["TRANSFER_STYLE_COMPLETED"]


def test_a_transient_failure_fails_only_its_record_and_the_redelivery_delivers_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    # botocore retries a 500 with back-off (seconds); one attempt keeps the test fast
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    stack.connect("flaky=", "private=", "failing=", "viewer=")
    stack.server.fail("flaky=")  # API Gateway answers 500 for this one connection
    stack.job(PUBLIC, "flaky=")
    stack.job(PRIVATE, "private=", private=True)
    stack.job(FAILING, "failing=")
    batch = sqs_event(
        completed(PUBLIC),
        completed(PRIVATE, private=True),
        {"type": "failed", "requestId": FAILING, "error": "the style image is not an image"},
    )

    assert failures(stack.invoke(batch)) == [batch["Records"][0]["messageId"]]

    assert events_of(stack.server, "private=") == [f"TRANSFER_STYLE_COMPLETED::{PRIVATE}"]
    assert events_of(stack.server, "failing=") == [f"TRANSFER_STYLE_FAILED::{FAILING}"]
    assert stack.server.messages("flaky=") == []
    assert stack.server.messages("viewer=") == []  # no broadcast before the requester has it
    assert stack.connection_ids() == {"flaky=", "private=", "failing=", "viewer="}  # a 500 is not a 410

    # SQS redelivers only the failed record; API Gateway has recovered
    stack.server.fail("flaky=", False)
    redelivery = {"Records": [batch["Records"][0]]}
    redelivery["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    assert failures(stack.invoke(redelivery)) == []
    assert events_of(stack.server, "flaky=") == [f"TRANSFER_STYLE_COMPLETED::{PUBLIC}", "TRANSFER_STYLE_COMPLETED"]
    for connection_id in ("viewer=", "private=", "failing="):  # the public result's broadcast, once
        assert events_of(stack.server, connection_id).count("TRANSFER_STYLE_COMPLETED") == 1
    assert events_of(stack.server, "private=").count(f"TRANSFER_STYLE_COMPLETED::{PRIVATE}") == 1  # not again


def test_progress_is_pushed_while_the_job_runs_and_dropped_after_it_ends(stack: Stack):
    stack.connect("requester=")
    stack.job(PUBLIC, "requester=")

    assert failures(stack.invoke("notify/progress.json")) == []
    assert stack.server.messages("requester=") == [
        {"event": f"TRANSFER_STYLE_PROGRESS::{PUBLIC}", "data": {"progress": 0.25, "iteration": 45, "total": 180}}
    ]
    job = stack.jobs.get(PUBLIC)
    assert (job["status"], job["progress"]) == ("RUNNING", 0.25)

    assert failures(stack.invoke("notify/completed_public.json")) == []
    late = {"type": "progress", "requestId": PUBLIC, "progress": 0.9, "iteration": 162, "total": 180}
    assert failures(stack.invoke(sqs_event(late))) == []

    assert events_of(stack.server, "requester=")[-1] == "TRANSFER_STYLE_COMPLETED"  # nothing after the result
    job = stack.jobs.get(PUBLIC)
    assert (job["status"], job["progress"]) == ("SUCCEEDED", 1)


def test_a_failure_reaches_the_client(stack: Stack):
    stack.connect("requester=", "viewer=")
    stack.job(FAILING, "requester=")

    assert failures(stack.invoke("notify/failed.json")) == []

    error = "the style image is not an image in a format we can read"
    assert stack.server.messages("requester=") == [
        {"event": f"TRANSFER_STYLE_FAILED::{FAILING}", "data": {"error": error}}
    ]
    assert stack.server.messages("viewer=") == []
    job = stack.jobs.get(FAILING)
    assert (job["status"], job["error"]) == ("FAILED", error)
    # redelivered: not sent again
    assert failures(stack.invoke(sqs_event(json.loads(event("notify/failed.json")["Records"][0]["body"])))) == []
    assert len(stack.server.messages("requester=")) == 1


def test_a_failure_is_sent_even_when_the_state_machine_marked_the_job_first(stack: Stack):
    stack.connect("requester=")
    stack.job(FAILING, "requester=")
    assert stack.jobs.mark_failed(FAILING, "the content image does not exist")  # the state machine's update

    failed = {"type": "failed", "requestId": FAILING, "error": "the content image does not exist"}
    assert failures(stack.invoke(sqs_event(failed))) == []

    assert events_of(stack.server, "requester=") == [f"TRANSFER_STYLE_FAILED::{FAILING}"]


def test_a_failure_after_a_success_is_not_sent(stack: Stack):
    stack.connect("requester=")
    stack.job(PUBLIC, "requester=")
    assert failures(stack.invoke("notify/completed_public.json")) == []

    failed = {"type": "failed", "requestId": PUBLIC, "error": "timed out"}
    assert failures(stack.invoke(sqs_event(failed))) == []

    assert events_of(stack.server, "requester=") == [f"TRANSFER_STYLE_COMPLETED::{PUBLIC}", "TRANSFER_STYLE_COMPLETED"]
    assert stack.jobs.get(PUBLIC)["status"] == "SUCCEEDED"


def test_malformed_messages_and_unknown_jobs_are_dropped_not_retried(stack: Stack):
    stack.connect("requester=")
    stack.job(PUBLIC, "requester=")
    unknown = "ffffffffffffffffffffffffffffffff"
    batch = sqs_event(
        "not json",
        "[1, 2]",
        {"type": "cancelled", "requestId": PUBLIC},
        {"type": "completed", "requestId": PUBLIC},  # no resultKey
        {"type": "progress", "requestId": PUBLIC, "progress": 7, "iteration": 1, "total": 10},
        {"type": "completed", "requestId": PUBLIC, "resultKey": "styles/../private/output/x.jpg"},
        completed(PUBLIC, private=True),  # not this job's output key
        completed(unknown),
        {"type": "progress", "requestId": unknown, "progress": 0.5, "iteration": 1, "total": 2},
        {"type": "failed", "requestId": unknown, "error": "whatever"},
    )

    assert failures(stack.invoke(batch)) == []

    assert stack.server.delivered() == {}
    job = stack.jobs.get(PUBLIC)
    assert (job["status"], job["progress"]) == ("SUBMITTED", 0)
    assert stack.jobs.get(unknown) is None  # no phantom item


@pytest.mark.parametrize("path", sorted(p.name for p in (EVENTS / "notify").glob("*.json")))
def test_each_sample_event_runs_as_sam_local_invoke_would(stack: Stack, path: str):
    stack.connect("conn-public=", "conn-private=", "conn-failed=")
    stack.job(PUBLIC, "conn-public=")
    stack.job(PRIVATE, "conn-private=", private=True)
    stack.job(FAILING, "conn-failed=")
    sample = event(Path("notify") / path)
    for record in sample["Records"]:  # the files are what SQS would send: check their digests
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()

    assert failures(stack.invoke(f"notify/{path}")) == []

    delivered = stack.server.delivered()
    assert delivered, "nothing was posted"
    for record in sample["Records"]:
        body = json.loads(record["body"])
        owner = {PUBLIC: "conn-public=", PRIVATE: "conn-private=", FAILING: "conn-failed="}[body["requestId"]]
        expected = {"progress": "TRANSFER_STYLE_PROGRESS", "completed": "TRANSFER_STYLE_COMPLETED"}.get(
            body["type"], "TRANSFER_STYLE_FAILED"
        )
        assert f"{expected}::{body['requestId']}" in events_of(stack.server, owner)


def test_a_progress_thumbnail_goes_to_the_requester_only_and_a_malformed_one_is_dropped(stack: Stack):
    stack.connect("requester=", "viewer=")
    stack.job(PUBLIC, "requester=")
    tiny_jpeg = "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    step = {"type": "progress", "requestId": PUBLIC, "progress": 0.5, "iteration": 90, "total": 180}
    assert failures(stack.invoke(sqs_event({**step, "thumbnail": tiny_jpeg}))) == []
    assert stack.server.messages("requester=") == [
        {
            "event": f"TRANSFER_STYLE_PROGRESS::{PUBLIC}",
            "data": {"progress": 0.5, "iteration": 90, "total": 180, "thumbnail": tiny_jpeg},
        }
    ]
    assert stack.server.messages("viewer=") == []  # progress, thumbnails included, is never broadcast
    for bad in (
        "https://elsewhere.example/x.jpg",
        "data:text/html;base64,PHNjcmlwdD4=",
        "data:image/jpeg;base64," + "A" * 60_000,
    ):
        assert failures(stack.invoke(sqs_event({**step, "thumbnail": bad}))) == []  # dropped, not retried
    assert len(stack.server.messages("requester=")) == 1
