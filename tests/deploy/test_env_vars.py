"""`make env-vars`: the `sam local invoke --env-vars` file for a deployed stack, written from a stack
in moto (its resources' physical names, its parameters, its SiteUrl), then used: a function run in
this process with exactly that environment answers a sample event from the stack's own bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from styledeploy.env_vars import env_vars
from styledeploy.runner import ROOT, Runner
from stylelocal import template

from tests.stack.local_aws import LocalAws

from .conftest import REGION

SITE = "https://d111111abcdef8.cloudfront.net"
API_ID = "abc123def4"
# The resources the functions' environments name, each as a resource moto can create from a
# template (the WebSocket API as a parameter of that name: only its physical id matters here).
STACK = {
    "Parameters": {
        "Stage": {"Type": "String", "Default": "prod"},
        "JobsPerConnection": {"Type": "Number", "Default": 5},
        "AccessKey": {"Type": "String", "Default": "", "NoEcho": True},
    },
    "Resources": {
        **{name: {"Type": "AWS::DynamoDB::Table", "Properties": {
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"}}
           for name in ("JobsTable", "ConnectionsTable", "IdempotencyTable", "RateLimitsTable", "WorkersTable")},
        "ImagesBucket": {"Type": "AWS::S3::Bucket"},
        "ResultsQueue": {"Type": "AWS::SQS::Queue"},
        "WorkQueue": {"Type": "AWS::SQS::Queue"},
        "GpuJobQueue": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Name": "arn:aws:batch:us-east-1:123456789012:job-queue/demo-gpu", "Type": "String", "Value": "x"}},
        "TransferStateMachine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "RoleArn": "arn:aws:iam::123456789012:role/sfn",
            "DefinitionString": json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})}},
        "WebSocketApi": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": API_ID, "Type": "String",
                                                                       "Value": "x"}},
    },
    "Outputs": {"SiteUrl": {"Value": SITE}},
}  # fmt: skip


def deployed(aws: Any) -> dict[str, str]:
    """The stack `demo` in moto; its physical ids."""
    aws("cloudformation").create_stack(
        StackName="demo", TemplateBody=json.dumps(STACK),
        Parameters=[{"ParameterKey": "JobsPerConnection", "ParameterValue": "3"},
                    {"ParameterKey": "AccessKey", "ParameterValue": "s3cret"}],
    )  # fmt: skip
    resources = aws("cloudformation").describe_stack_resources(StackName="demo")["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


def write(moto_endpoint: str, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=moto_endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "styledeploy", "env-vars", "--stack", "demo", "--region", REGION, "--output",
         str(output), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_file_holds_every_functions_environment_as_the_stack_has_it(aws: Any, moto_endpoint: str, tmp_path: Path):
    ids = deployed(aws)
    output = tmp_path / "env-vars.json"
    done = write(moto_endpoint, output, "--access-key", "s3cret")
    assert done.returncode == 0, done.stderr
    assert f"--env-vars {output}" in done.stdout
    written = json.loads(output.read_text())
    assert set(written) == set(template.resources("AWS::Serverless::Function"))
    for logical_id, variables in written.items():
        assert set(variables) == set(template.function(logical_id)["Environment"]["Variables"]), logical_id
    transfer = written["TransferStyleFunction"]
    assert transfer["JOBS_TABLE"] == ids["JobsTable"]
    assert transfer["RATE_LIMITS_TABLE"] == ids["RateLimitsTable"]
    assert transfer["IMAGES_BUCKET"] == ids["ImagesBucket"]
    assert transfer["STATE_MACHINE_ARN"] == ids["TransferStateMachine"]
    assert transfer["STATE_MACHINE_ARN"].startswith("arn:aws:states:")
    assert transfer["JOBS_PER_CONNECTION"] == "3"  # the deployed value, not the template's default
    assert transfer["MAX_ACTIVE_JOBS"] == "60"  # a parameter the stack does not have: the template's default
    notify = written["NotifyFunction"]
    assert notify["WEBSOCKET_ENDPOINT"] == f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/prod"
    assert notify["PUBLIC_BASE_URL"] == SITE
    assert notify["CONNECTIONS_TABLE"] == ids["ConnectionsTable"]
    assert written["ConnectFunction"]["ACCESS_KEY"] == "s3cret"


def test_a_noecho_parameter_is_written_only_as_given(runner: Runner, aws: Any, monkeypatch: pytest.MonkeyPatch):
    """CloudFormation shows a NoEcho parameter as **** (moto shows it as it is: masked here as AWS does)."""
    deployed(aws)
    cloudformation = runner.client("cloudformation")
    describe = cloudformation.describe_stacks

    def masked(**request: Any) -> dict[str, Any]:
        answer = describe(**request)
        for parameter in answer["Stacks"][0]["Parameters"]:
            if parameter["ParameterKey"] == "AccessKey":
                parameter["ParameterValue"] = "****"
        return answer

    monkeypatch.setattr(cloudformation, "describe_stacks", masked)
    assert env_vars(runner, "demo")["ConnectFunction"]["ACCESS_KEY"] == "****"  # refuses every client
    assert env_vars(runner, "demo", access_key="s3cret")["ConnectFunction"]["ACCESS_KEY"] == "s3cret"


class Deployed(LocalAws):
    """A function run in this process the way `sam local invoke --env-vars` runs it: its
    environment is the file's entry for it, plus what Lambda itself sets."""

    def __init__(self, endpoint: str, variables: dict[str, dict[str, str]]) -> None:
        super().__init__(endpoint)
        self.variables = variables

    def environment(self, logical_id: str) -> dict[str, str]:
        return {**self.variables[logical_id], "AWS_LAMBDA_FUNCTION_NAME": logical_id, "AWS_SAM_LOCAL": "true",
                "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip


def test_a_sample_event_runs_against_the_stacks_own_resources(aws: Any, moto_endpoint: str, tmp_path: Path):
    ids = deployed(aws)
    aws("s3").put_object(Bucket=ids["ImagesBucket"], Key="styles/swirls.jpg", Body=b"\xff\xd8\xff")
    output = tmp_path / "env-vars.json"
    assert write(moto_endpoint, output).returncode == 0
    function = Deployed(moto_endpoint, json.loads(output.read_text()))
    answer = json.loads(function.invoke("ListStylesFunction", "list_styles/list.json")["body"])
    assert answer["event"] == "STYLES"
    assert [s["name"] for s in answer["data"]["styles"]] == ["swirls"]
    assert answer["data"]["styles"][0]["previewUrl"] == f"{SITE}/styles/swirls.jpg"


def test_the_dry_run_reads_nothing_and_writes_nothing(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = "/nonexistent"
    output = tmp_path / "env-vars.json"
    done = subprocess.run(
        [sys.executable, "-m", "styledeploy", "env-vars", "--stack", "demo", "--output", str(output), "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ['aws cloudformation describe_stacks {"StackName": "demo"}',
                         'aws cloudformation list_stack_resources {"StackName": "demo"}']  # fmt: skip
    shown = json.loads("\n".join(lines[2:]))
    assert shown["TransferStyleFunction"]["JOBS_TABLE"] == "<JobsTable>"
    assert not output.exists()
