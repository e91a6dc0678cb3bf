"""The instant preview (functions/preview) against moto and a local @connections server, and its
step in the state machine executed by moto: made from the job's own images, stored in the job's
own area, pushed to the requester only (a private one only as a presigned GET), reported by
GET_JOB, and never able to fail the job."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image
from stylelocal import moto_fixes
from styleservice.jobs import Jobs

from ..local.stack_process import photo_png
from .connections_server import ConnectionsServer, connections_server  # noqa: F401 - a fixture
from .local_aws import ROOT, LocalAws, event
from .pool_hand import Hand
from .test_template import asl, ended, executing, resources, s3_grants, start_job  # noqa: F401 - a fixture

JOB_ID = event("preview/job.json")["jobId"]
CDN = "https://cdn.local.test"
TOKEN = "the-token"


class Stack:
    def __init__(self, aws: LocalAws, server: ConnectionsServer) -> None:
        self.aws = aws
        self.server = server
        self.s3 = aws.client("s3")
        self.bucket = aws.refs["ImagesBucket"]
        self.jobs = Jobs(aws.refs["JobsTable"])
        painting = (ROOT / "catalogue" / "the-great-wave.jpg").read_bytes()
        self.s3.put_object(Bucket=self.bucket, Key="styles/the-great-wave.jpg", Body=painting)
        server.connect("requester=", "stranger=")

    def job(self, job_id: str = JOB_ID, private: bool = False, photo: bytes | None = None, **options: Any) -> None:
        """A job as TRANSFER_STYLE records it, with its photo stored."""
        area = "private" if private else "public"
        self.s3.put_object(Bucket=self.bucket, Key=f"{area}/input/{job_id}.png", Body=photo or photo_png(120, 80))
        self.jobs.create(
            {
                "jobId": job_id,
                "connectionId": "requester=",
                "tokenHash": hashlib.sha256(TOKEN.encode()).hexdigest(),
                "isPrivate": private,
                "inputKey": f"{area}/input/{job_id}.png",
                "style": "the-great-wave",
                "styleKey": "styles/the-great-wave.jpg",
                "outputKey": f"{area}/output/{job_id}.jpg",
                "options": {"preset": "auto", "size": None, "strength": 0.5, **options},
            }
        )

    def keys(self, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listing.get("Contents", [])]

    def image(self, key: str) -> Image.Image:
        return Image.open(io.BytesIO(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()))

    def get_job(self, job_id: str = JOB_ID) -> dict[str, Any]:
        request = {"action": "GET_JOB", "jobId": job_id, "jobToken": TOKEN}
        call = event("get_job/job.json")
        call["body"] = json.dumps(request)
        return json.loads(self.aws.invoke("GetJobFunction", call)["body"])["data"]


@pytest.fixture
def stack(aws: LocalAws, connections_server: ConnectionsServer, monkeypatch: pytest.MonkeyPatch) -> Stack:  # noqa: F811
    aws.overrides["WEBSOCKET_ENDPOINT"] = connections_server.endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    return Stack(aws, connections_server)


def test_a_public_preview_is_stored_beside_the_job_and_pushed_to_the_requester_only(stack: Stack):
    stack.job()
    assert stack.aws.invoke("PreviewFunction", "preview/job.json") == {
        "previewKey": f"public/preview/{JOB_ID}.jpg",
        "pushed": True,
    }
    preview = stack.image(f"public/preview/{JOB_ID}.jpg")
    assert (preview.format, preview.size) == ("JPEG", (120, 80))  # the photo's shape, at most 512 px
    assert stack.server.messages("requester=") == [
        {"event": f"TRANSFER_STYLE_PREVIEW::{JOB_ID}", "data": {"preview": f"{CDN}/public/preview/{JOB_ID}.jpg"}}
    ]
    assert stack.server.messages("stranger=") == []  # never broadcast
    assert stack.jobs.get(JOB_ID)["previewKey"] == f"public/preview/{JOB_ID}.jpg"
    assert stack.get_job()["preview"] == f"{CDN}/public/preview/{JOB_ID}.jpg"


def test_a_private_preview_stays_private_and_goes_out_only_as_a_presigned_get(stack: Stack):
    stack.job(private=True)
    stack.aws.invoke("PreviewFunction", "preview/job.json")
    assert stack.keys("public/") == []  # nothing of a private job in the public area
    assert stack.keys("private/preview/") == [f"private/preview/{JOB_ID}.jpg"]
    (pushed,) = stack.server.messages("requester=")
    url = pushed["data"]["preview"]
    assert pushed["event"] == f"TRANSFER_STYLE_PREVIEW::{JOB_ID}"
    assert "X-Amz-Signature=" in url
    assert not url.startswith(CDN)
    assert Image.open(io.BytesIO(requests.get(url, timeout=10).content)).format == "JPEG"  # the link works
    assert stack.server.messages("stranger=") == []
    reported = stack.get_job()["preview"]
    assert "X-Amz-Signature=" in reported
    assert f"private/preview/{JOB_ID}.jpg" in reported


def test_the_preview_follows_the_options(stack: Stack):
    stack.job(photo=photo_png(1200, 800), size=64)
    stack.aws.invoke("PreviewFunction", "preview/job.json")
    assert stack.image(f"public/preview/{JOB_ID}.jpg").size == (64, 43)  # the result's size
    other = "0" * 32
    stack.job(other, photo=photo_png(1200, 800))
    stack.aws.invoke("PreviewFunction", {"jobId": other})
    assert stack.image(f"public/preview/{other}.jpg").size == (512, 341)  # no size: at most 512 px


def test_a_job_that_ended_gets_no_preview_push(stack: Stack, capsys):
    stack.job()
    stack.jobs.mark_failed(JOB_ID, "the style transfer job failed; please try again")
    assert stack.aws.invoke("PreviewFunction", "preview/job.json")["pushed"] is False
    assert stack.server.messages("requester=") == []
    assert "preview" not in stack.get_job()
    # counted, in the metrics' own format (EMF on stdout)
    metric = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"PreviewTooLate"' in line]
    assert [found["PreviewTooLate"] for found in metric] == [[1.0]]
    assert metric[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StyleTransfer"


def test_a_blend_is_previewed_as_the_weighted_mean_of_its_paintings_styles(stack: Stack):
    from styleservice import preview

    scream = (ROOT / "catalogue" / "the-scream.jpg").read_bytes()
    stack.s3.put_object(Bucket=stack.bucket, Key="styles/the-scream.jpg", Body=scream)
    stack.job(styleBlend=[0.25, 0.75])
    stack.jobs.table.update_item(Key={"jobId": JOB_ID}, UpdateExpression="SET blendKeys = :more",
                                 ExpressionAttributeValues={":more": ["styles/the-scream.jpg"]})  # fmt: skip
    stack.aws.invoke("PreviewFunction", "preview/job.json")
    made = stack.image(f"public/preview/{JOB_ID}.jpg")
    wave = (ROOT / "catalogue" / "the-great-wave.jpg").read_bytes()
    photo = stack.s3.get_object(Bucket=stack.bucket, Key=f"public/input/{JOB_ID}.png")["Body"].read()
    expected = preview.make_preview(photo, [wave, scream], blend=[0.25, 0.75])
    assert made.tobytes() == Image.open(io.BytesIO(preview.jpeg(expected))).tobytes()
    alone = Image.open(io.BytesIO(preview.jpeg(preview.make_preview(photo, wave))))
    assert made.tobytes() != alone.tobytes()


def test_a_job_taken_back_gets_no_preview_and_keeps_none(stack: Stack):
    stack.job()
    stack.jobs.mark_deleted(JOB_ID)
    assert stack.aws.invoke("PreviewFunction", "preview/job.json") == {"previewKey": None, "pushed": False}
    assert stack.keys("public/preview/") == []
    assert stack.server.messages("requester=") == []


@pytest.mark.parametrize(
    ("photo", "reason"),
    [
        (photo_png(96, 64)[:200], "the photo is damaged or truncated"),  # a PNG's signature, truncated
        (photo_png(600, 100), "too small"),  # at 64 px it is 64x11: thinner than the network's 32 px
    ],
    ids=["truncated", "too thin"],
)
def test_images_the_network_cannot_use_are_skipped_with_a_reason(stack: Stack, photo: bytes, reason: str):
    stack.job(photo=photo, size=64)
    answer = stack.aws.invoke("PreviewFunction", "preview/job.json")
    assert (answer["previewKey"], answer["pushed"]) == (None, False)
    assert reason in answer["reason"]
    assert stack.keys("public/preview/") == []
    assert stack.server.messages("requester=") == []
    assert "previewKey" not in stack.jobs.get(JOB_ID)


def test_a_storage_failure_is_raised_for_the_state_machine_to_catch(stack: Stack):
    stack.job()
    stack.s3.delete_object(Bucket=stack.bucket, Key=f"public/input/{JOB_ID}.png")  # S3 fails the read
    with pytest.raises(Exception, match="NoSuchKey"):
        stack.aws.invoke("PreviewFunction", "preview/job.json")
    assert stack.server.messages("requester=") == []


def test_the_preview_function_writes_only_previews_and_only_the_state_machine_invokes_it():
    statements = resources("AWS::Serverless::Function")["PreviewFunction"]["Policies"][0]["Statement"]
    s3 = s3_grants(statements)
    assert {resource for action, resource in s3 if action == "s3:PutObject"} == {
        "public/preview/*",
        "private/preview/*",
    }
    assert not any(resource.startswith(("public/output", "private/output")) for _, resource in s3)
    machine = resources("AWS::Serverless::StateMachine")["TransferStateMachine"]
    assert machine["DefinitionSubstitutions"]["PreviewFunctionArn"] == {"Fn::GetAtt": ["PreviewFunction", "Arn"]}
    invokes = [s for s in machine["Policies"][0]["Statement"] if "lambda:InvokeFunction" in s["Action"]]
    assert [s["Resource"] for s in invokes] == [
        [{"Fn::GetAtt": ["PreviewFunction", "Arn"]}, {"Fn::GetAtt": ["ScaleWorkersFunction", "Arn"]}]
    ]
    [branch] = [b["States"] for b in asl()["States"]["Run"]["Branches"] if b["StartAt"] == "MakePreview"]
    step = branch["MakePreview"]
    assert step["End"] is True  # a branch of its own: the painting never waits for it
    assert branch[step["Catch"][0]["Next"]] == {"Type": "Pass", "End": True}  # a failure ends it quietly
    assert step["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert step["ResultPath"] is None
    assert step["Catch"][0]["ResultPath"] is None
    assert step["TimeoutSeconds"] <= 30


# --- its step in the state machine, executed by moto ---------------------------------------------


@pytest.fixture
def invoking(executing: LocalAws, connections_server: ConnectionsServer, monkeypatch) -> Iterator[Stack]:  # noqa: F811
    """moto executing the state machine, its Lambda tasks run by the real functions in this process."""
    executing.overrides["WEBSOCKET_ENDPOINT"] = connections_server.endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", executing.endpoint)

    def invoke(name: str, payload: Any) -> tuple[Any, bool]:
        try:
            return executing.invoke(name, payload), False
        except Exception as failure:
            return {"errorType": type(failure).__name__, "errorMessage": str(failure)}, True

    moto_fixes.install(["lambda_invoker"])
    moto_fixes.set_lambda_invoker(invoke)
    try:
        yield Stack(executing, connections_server)
    finally:
        moto_fixes.set_lambda_invoker(None)


def lambda_tasks(history: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in history if e["type"].startswith("Task") and "lambda" in json.dumps(e, default=str)]


def test_the_preview_is_made_while_the_job_waits_for_its_worker(invoking: Stack):
    invoking.job(private=True, photo=photo_png(96, 64))
    arn, _ = start_job(invoking.aws, JOB_ID)
    hand = Hand(invoking.aws)

    item = hand.take()  # the job is on the work queue, its worker not yet answering
    deadline = time.monotonic() + 30
    while not invoking.server.messages("requester="):
        assert time.monotonic() < deadline, "no preview while the job waited"
        time.sleep(0.1)
    assert invoking.server.messages("requester=")[0]["event"] == f"TRANSFER_STYLE_PREVIEW::{JOB_ID}"
    assert invoking.aws.client("stepfunctions").describe_execution(executionArn=arn)["status"] == "RUNNING"
    hand.succeed(item)

    execution, history = ended(invoking.aws, arn)
    assert execution["status"] == "SUCCEEDED"
    names = [e.get("stateEnteredEventDetails", {}).get("name") for e in history if e["type"] == "TaskStateEntered"]
    assert {"RecordJob", "EnsureWorker", "MakePreview", "PaintOnWorker"} <= set(names)
    assert names[0] == "RecordJob"
    assert "TaskSucceeded" in lambda_tasks(history)


@pytest.mark.parametrize("cause", ["the function fails", "no function to invoke"])
def test_a_failed_preview_never_fails_the_job(invoking: Stack, cause: str):
    """The worker still gets the job, its input untouched, and the job ends as the worker says."""
    if cause == "the function fails":
        invoking.job()
        invoking.s3.delete_object(Bucket=invoking.bucket, Key=f"public/input/{JOB_ID}.png")  # S3 fails it
    else:
        moto_fixes.set_lambda_invoker(None)  # moto's own Lambda: it has no such function
        invoking.job()
    arn, job = start_job(invoking.aws, JOB_ID)
    hand = Hand(invoking.aws)

    item = hand.take()
    assert item.job.message() == job  # the worker's input is untouched by the preview step
    hand.succeed(item)

    execution, history = ended(invoking.aws, arn)
    assert execution["status"] == "SUCCEEDED"
    assert "TaskFailed" in lambda_tasks(history)
    assert invoking.server.messages("requester=") == []
