"""DELETE_JOB and GET_IMAGE against moto and a local @connections server: the holder of a job's
token takes it back (its execution stopped if it still runs, its images deleted, out of the Feed,
IMAGE_REMOVED to every connection for a public one), and a public painting's permalink answers
only while it is in the Feed. A wrong token gets GET_JOB's answer for an unknown job; what
arrives for a job taken back (its result, its preview) is removed rather than recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stylejob import keys
from styleservice.jobs import Jobs, hash_token

from .connections_server import ConnectionsServer, connections_server  # noqa: F401 - a fixture
from .local_aws import LocalAws, event, queued_results, sqs_event
from .routes_support import PNG, answer, bucket, event_files, jobs_table, keys_under, refusal

JOB = json.loads(event("delete_job/job.json")["body"])
JOB_ID, TOKEN = JOB["jobId"], JOB["jobToken"]
NOT_FOUND = "no job with that jobId and jobToken"
NO_IMAGE = "no public painting with that jobId: it may have been taken back by its owner"
CDN = "https://cdn.local.test"


class Stack:
    def __init__(self, aws: LocalAws, server: ConnectionsServer, jobs: Jobs) -> None:
        self.aws, self.server, self.jobs = aws, server, jobs
        self.s3 = aws.client("s3")

    def job(self, private: bool = False, status: str = "SUBMITTED", own_style: bool = True) -> list[str]:
        """A job as TRANSFER_STYLE records it and the state machine and worker leave it, with
        every image it can have; their keys."""
        area = "private" if private else "public"
        style_key = keys.own_style_key(JOB_ID, private, "png") if own_style else "styles/starry-night.jpg"
        blend_key = keys.own_style_key(JOB_ID, private, "jpg", 1)
        stored = [f"{area}/input/{JOB_ID}.png", style_key, blend_key, keys.preview_key(JOB_ID, private)]
        self.jobs.create(
            {"jobId": JOB_ID, "connectionId": "requester=", "tokenHash": hash_token(TOKEN), "isPrivate": private,
             "inputKey": stored[0], "style": "custom", "styleKey": style_key, "blendKeys": [blend_key],
             "outputKey": keys.output_key(JOB_ID, private), "options": {"preset": "preview"}}
        )  # fmt: skip
        if status == "SUCCEEDED":
            self.jobs.mark_succeeded(JOB_ID, keys.output_key(JOB_ID, private), public=not private)
            stored.append(keys.output_key(JOB_ID, private))
        for key in stored:
            if key.startswith(("public/", "private/")):
                self.s3.put_object(Bucket=bucket(self.aws), Key=key, Body=PNG)
        # what must never go: the catalogue, an upload, another job's images
        others = ["styles/starry-night.jpg", "uploads/" + "a" * 32 + ".png", f"{area}/input/{'b' * 32}.png"]
        for key in others:
            self.s3.put_object(Bucket=bucket(self.aws), Key=key, Body=PNG)
        return stored

    def stored(self) -> list[str]:
        return keys_under(self.aws, "public/") + keys_under(self.aws, "private/")

    def delete(self, name: str = "job") -> dict[str, Any]:
        return self.aws.invoke("DeleteJobFunction", f"delete_job/{name}.json")

    def image(self, name: str = "image") -> dict[str, Any]:
        return self.aws.invoke("GetImageFunction", f"get_image/{name}.json")


@pytest.fixture
def stack(aws: LocalAws, connections_server: ConnectionsServer, monkeypatch: pytest.MonkeyPatch) -> Stack:  # noqa: F811
    aws.overrides["WEBSOCKET_ENDPOINT"] = connections_server.endpoint
    connections_server.connect("requester=", "feed-1=", "feed-2=")
    for connection in ("requester=", "feed-1=", "feed-2="):
        aws.client("dynamodb").put_item(TableName=aws.refs["ConnectionsTable"],
                                        Item={"connectionId": {"S": connection}})  # fmt: skip
    return Stack(aws, connections_server, jobs_table(aws, monkeypatch))


def test_every_event_file_is_exercised():
    assert {path.split("/")[1].removesuffix(".json") for path in event_files("delete_job")} == {
        "job", "wrong_token", "unknown_job", "missing_token", "bad_job_id", "bad_json",
    }  # fmt: skip
    assert {path.split("/")[1].removesuffix(".json") for path in event_files("get_image")} == {
        "image", "unknown_job", "bad_job_id", "with_token",
    }  # fmt: skip


def test_a_public_painting_is_taken_back_everywhere(stack: Stack):
    stored = stack.job(status="SUCCEEDED")
    assert answer(stack.image()) == ("IMAGE", {
        "jobId": JOB_ID, "input": f"{CDN}/public/input/{JOB_ID}.png", "result": f"{CDN}/public/output/{JOB_ID}.jpg",
        "style": "custom", "completedAt": stack.jobs.get(JOB_ID)["completedAt"],
    })  # fmt: skip
    listed = stack.aws.invoke("ListImagesFunction", {**event("list_images/first_page.json")})
    assert JOB_ID in listed["body"]

    assert answer(stack.delete()) == ("JOB_DELETED", {"jobId": JOB_ID})
    assert not set(stored) & set(stack.stored())  # every image of the job is gone ...
    assert set(stack.stored()) == {f"public/input/{'b' * 32}.png"}  # ... and nothing of anyone else's
    assert keys_under(stack.aws, "styles/") == ["styles/starry-night.jpg"]
    assert keys_under(stack.aws, "uploads/") == ["uploads/" + "a" * 32 + ".png"]
    removed = {"event": "IMAGE_REMOVED", "data": {"jobId": JOB_ID}}
    for connection in ("requester=", "feed-1=", "feed-2="):
        assert stack.server.messages(connection) == [removed]  # an open Feed takes it away at once
    assert JOB_ID not in stack.aws.invoke("ListImagesFunction", event("list_images/first_page.json"))["body"]
    assert refusal(stack.image()) == NO_IMAGE
    assert refusal(stack.aws.invoke("GetJobFunction", "get_job/job.json")) == NOT_FOUND
    item = stack.jobs.get(JOB_ID)  # a tombstone for a day: what arrives late is recognised
    assert (item["status"], "feed" in item, "resultKey" in item) == ("DELETED", False, False)
    assert 0 < item["expiresAt"] - item["deletedAt"] // 1000 <= 86400

    # the holder may send it again (a lost answer): the same answer, no second broadcast
    assert answer(stack.delete()) == ("JOB_DELETED", {"jobId": JOB_ID})
    assert stack.server.messages("feed-1=") == [removed]


def test_a_private_job_goes_without_a_word_to_anyone_else(stack: Stack):
    stored = stack.job(private=True, status="SUCCEEDED")
    assert refusal(stack.image()) == NO_IMAGE  # never a permalink for a private one
    assert answer(stack.delete())[0] == "JOB_DELETED"
    assert not set(stored) & set(stack.stored())
    assert stack.server.delivered() == {}


def test_a_wrong_token_is_an_unknown_job_and_deletes_nothing(stack: Stack):
    stored = stack.job(status="SUCCEEDED")
    wrong, unknown = stack.delete("wrong_token"), stack.delete("unknown_job")
    assert refusal(wrong) == NOT_FOUND
    assert wrong == unknown  # byte for byte
    assert set(stored) <= set(stack.stored())
    assert stack.jobs.get(JOB_ID)["status"] == "SUCCEEDED"
    assert answer(stack.image())[0] == "IMAGE"


def test_a_running_job_is_cancelled_its_execution_stopped(stack: Stack):
    stack.job(status="SUBMITTED")
    sfn = stack.aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=stack.aws.refs["TransferStateMachine"], name=JOB_ID, input="{}")[
        "executionArn"
    ]
    stack.jobs.table.update_item(Key={"jobId": JOB_ID}, UpdateExpression="SET #s = :r, executionArn = :a",
                                 ExpressionAttributeNames={"#s": "status"},
                                 ExpressionAttributeValues={":r": "RUNNING", ":a": arn})  # fmt: skip
    assert answer(stack.delete())[0] == "JOB_DELETED"
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert stack.jobs.get(JOB_ID)["status"] == "DELETED"
    assert stack.stored() == [f"public/input/{'b' * 32}.png"]


def test_a_job_whose_execution_never_started_is_deleted_all_the_same(stack: Stack):
    stack.job(status="SUBMITTED", own_style=False)  # TRANSFER_STYLE could not start it; no executionArn
    assert answer(stack.delete())[0] == "JOB_DELETED"
    assert stack.jobs.get(JOB_ID)["status"] == "DELETED"


def test_a_result_that_arrives_for_a_job_taken_back_is_deleted_not_recorded(stack: Stack):
    stack.job(status="SUBMITTED")
    assert answer(stack.delete())[0] == "JOB_DELETED"
    output = keys.output_key(JOB_ID, False)
    stack.s3.put_object(Bucket=bucket(stack.aws), Key=output, Body=PNG)  # the worker stored it meanwhile
    completed = {"type": "completed", "requestId": JOB_ID, "resultKey": output}
    assert stack.aws.invoke("NotifyFunction", sqs_event(completed)) == {"batchItemFailures": []}
    assert output not in stack.stored()
    assert stack.jobs.get(JOB_ID)["status"] == "DELETED"  # never brought back by its result
    assert not stack.jobs.mark_succeeded(JOB_ID, output, public=True)
    # nobody hears of the result: only that the (public) job was taken back
    events = {message["event"] for sent in stack.server.delivered().values() for message in sent}
    assert events == {"IMAGE_REMOVED"}


def stop_heard(stack: Stack) -> dict[str, Any]:
    """functions/job_ended hears (through EventBridge) that the job's execution was stopped."""
    ended = event("job_ended/aborted.json")
    ended["detail"]["name"] = JOB_ID
    return stack.aws.invoke("JobEndedFunction", ended)


def test_a_cancelled_job_is_not_announced_as_failed_when_its_stop_is_heard_after(stack: Stack):
    """The usual order: StopExecution, the tombstone, and only then EventBridge's event."""
    stack.job(status="SUBMITTED")
    assert answer(stack.delete())[0] == "JOB_DELETED"
    assert stop_heard(stack)["failed"] is False
    assert stack.jobs.get(JOB_ID)["status"] == "DELETED"
    assert queued_results(stack.aws) == []


def test_a_cancelled_job_is_not_announced_as_failed_when_its_stop_is_heard_first(stack: Stack):
    """The race: job_ended marks the stopped job FAILED between DELETE_JOB's StopExecution and its
    tombstone. The job still ends taken back, and the failure it queued reaches nobody."""
    stack.job(status="SUBMITTED")
    assert stop_heard(stack)["failed"] is True
    (failure,) = queued_results(stack.aws)
    assert failure["type"] == "failed"
    assert answer(stack.delete())[0] == "JOB_DELETED"
    assert stack.jobs.get(JOB_ID)["status"] == "DELETED"
    assert stack.aws.invoke("NotifyFunction", sqs_event(failure)) == {"batchItemFailures": []}
    assert stack.jobs.get(JOB_ID)["status"] == "DELETED"
    events = {message["event"] for sent in stack.server.delivered().values() for message in sent}
    assert events == {"IMAGE_REMOVED"}  # the requester hears only that the public job was taken back


@pytest.mark.parametrize(
    ("function", "name", "text"),
    [
        ("DeleteJobFunction", "delete_job/missing_token", "jobToken is required"),
        ("DeleteJobFunction", "delete_job/bad_job_id", "jobId: String should match pattern '^[0-9a-f]{32}$'"),
        ("DeleteJobFunction", "delete_job/bad_json", "the message is not valid JSON"),
        ("GetImageFunction", "get_image/bad_job_id", "jobId: String should match pattern '^[0-9a-f]{32}$'"),
        ("GetImageFunction", "get_image/unknown_job", NO_IMAGE),
        ("GetImageFunction", "get_image/with_token", "unknown field jobToken"),
    ],
)
def test_refused_with_a_clear_message(stack: Stack, function: str, name: str, text: str):
    stored = stack.job(status="SUCCEEDED")
    assert refusal(stack.aws.invoke(function, f"{name}.json")) == text
    assert set(stored) <= set(stack.stored())


def test_the_new_functions_may_do_only_what_they_need():
    from .test_template import resources, s3_grants

    functions = resources("AWS::Serverless::Function")
    statements = {name: functions[name]["Policies"][0]["Statement"] for name in
                  ("DeleteJobFunction", "GetImageFunction", "PreviewStylesFunction", "GetServiceFunction")}  # fmt: skip
    # DELETE_JOB deletes a job's own images, never the catalogue or an upload, and reads no image
    deletes = s3_grants(statements["DeleteJobFunction"])
    assert {action for action, _ in deletes} == {"s3:DeleteObject"}
    assert {resource for _, resource in deletes} == {
        f"{area}/{what}/*" for area in ("public", "private") for what in ("input", "style", "preview", "output")
    }
    [stop] = [s for s in statements["DeleteJobFunction"] if s["Action"] == ["states:StopExecution"]]
    assert ":execution:${TransferStateMachine.Name}:*" in stop["Resource"]["Fn::Sub"]  # this stack's jobs only
    # GET_IMAGE reads only the attributes a Feed entry shows: never a token's hash or a connection
    [read] = statements["GetImageFunction"]
    attributes = read["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert {"tokenHash", "connectionId", "executionArn"}.isdisjoint(attributes)
    assert read["Action"] == ["dynamodb:GetItem"]
    # PREVIEW_STYLES stores nothing; GET_SERVICE reads the pool's table only
    s3_actions = {
        action for s in statements["PreviewStylesFunction"] for action in s["Action"] if action.startswith("s3:")
    }
    assert s3_actions == {"s3:GetObject", "s3:ListBucket"}
    assert [s["Resource"] for s in statements["GetServiceFunction"]] == [{"Fn::GetAtt": ["WorkersTable", "Arn"]}]
    assert functions["GetServiceFunction"]["Environment"]["Variables"]["WORKER_DEVICE"] == "cuda"
