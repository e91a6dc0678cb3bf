"""`make env-vars`: the file `sam local invoke --env-vars` takes, with every function's environment
as the deployed stack has it (its tables, bucket, state machine, queue, WebSocket endpoint, CDN
address and parameters), so that the sample events under events/ run against real resources, not
only the ones a function refuses before it touches anything.

Each function's `Environment.Variables` in template.yaml (Globals merged) are resolved against the
stack: a resource's Ref is its physical id (CloudFormation's ListStackResources), a parameter's
Ref its deployed value (DescribeStacks), and the CDN's domain comes from the SiteUrl output. A
NoEcho parameter (AccessKey) cannot be read back: it is written as `--access-key` gives it, or as
CloudFormation shows it (****), which no client sends.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from stylelocal import template

from .runner import PLACEHOLDER_OUTPUTS, DeployError, Runner, placeholder

NO_ECHO_SHOWN = "****"  # what DescribeStacks gives for a NoEcho parameter


def stack_description(runner: Runner, stack: str) -> dict[str, Any]:
    read = {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": placeholder(k)} for k in PLACEHOLDER_OUTPUTS],
                        "Parameters": []}]}  # fmt: skip
    return runner.call("cloudformation", "describe_stacks", StackName=stack, read=read)["Stacks"][0]


def physical_ids(runner: Runner, stack: str) -> dict[str, str]:
    """Logical id -> physical id of every resource of the stack."""
    read = {"StackResourceSummaries": [{"LogicalResourceId": name, "PhysicalResourceId": placeholder(name)}
                                       for name in template.resources()]}  # fmt: skip
    found: dict[str, str] = {}
    token: dict[str, str] = {}
    while True:
        page = runner.call("cloudformation", "list_stack_resources", StackName=stack, read=read, **token)
        found.update({r["LogicalResourceId"]: r["PhysicalResourceId"] for r in page["StackResourceSummaries"]})
        if not page.get("NextToken"):
            return found
        token = {"NextToken": page["NextToken"]}


def env_vars(runner: Runner, stack: str, *, access_key: str | None = None) -> dict[str, dict[str, str]]:
    """{function logical id: {variable: value}}, as `sam local invoke --env-vars` reads it."""
    described = stack_description(runner, stack)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}
    for name, value in parameters.items():
        if value == NO_ECHO_SHOWN and access_key is not None and name == "AccessKey":
            parameters[name] = access_key
    site = outputs.get("SiteUrl")
    if not site:
        raise DeployError(f"stack {stack} has no SiteUrl output: is it this project's stack, deployed completely?")
    resolve = template.Resolver(
        {**physical_ids(runner, stack), **parameters, "AWS::StackName": stack},
        {("Distribution", "DomainName"): urlsplit(site).netloc or site},
        runner.region,
    )
    found: dict[str, dict[str, str]] = {}
    for logical_id in template.resources("AWS::Serverless::Function"):
        variables = template.function(logical_id)["Environment"]["Variables"]
        try:
            found[logical_id] = {name: str(resolve(value)) for name, value in variables.items()}
        except KeyError as missing:
            raise DeployError(f"{logical_id}: stack {stack} has no {missing} to resolve its environment with") from None
    return found
