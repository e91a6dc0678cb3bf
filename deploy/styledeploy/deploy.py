"""`make deploy`: everything docs/deployment.md used to list by hand, in order, re-runnable:

1. the caller's account; its GPU quota, and a stop if it cannot run a single job (unless forced);
2. the worker's ECR repository (created once) and its lifecycle policy;
3. the worker image, tagged from its code (image.image_tag), built for linux/amd64 and pushed
   unless that tag is already there;
4. `sam build` and `sam deploy` (samconfig.toml; stack and region from the command line; the image
   and any --parameter as parameter overrides; parameters not given keep their deployed values);
5. the stack's outputs; config.json, the pages and the style catalogue into the bucket, only what
   changed; a CloudFront invalidation of the changed paths.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import image, site
from .names import check_stack_name
from .runner import PLACEHOLDER_OUTPUTS, DeployError, Runner, placeholder

SAMCONFIG = "samconfig.toml"
NO_ECHO = ("AccessKey",)
JOB_VCPUS = 4  # the job definition's VCPU: one job needs this much quota
# EC2 quotas (Service Quotas codes) that bound G instances, in vCPUs
GPU_QUOTAS = {"EC2": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
              "SPOT": ("L-3819A6DF", "All G and VT Spot Instance Requests")}  # fmt: skip


def account_id(runner: Runner) -> str:
    return runner.call("sts", "get_caller_identity", read={"Account": placeholder("ACCOUNT")})["Account"]


def capacity_type(runner: Runner, stack: str, parameters: list[str]) -> str:
    """CapacityType as this deploy will leave it: the one given, else the deployed stack's (SAM keeps
    a parameter's previous value), else the template's default, EC2."""
    for parameter in parameters:
        if parameter.startswith("CapacityType="):
            return parameter.split("=", 1)[1]
    try:
        answer = runner.call("cloudformation", "describe_stacks", StackName=stack, read={"Stacks": []})
    except ClientError:  # no such stack yet
        return "EC2"
    for stack_ in answer.get("Stacks", []):
        for parameter in stack_.get("Parameters", []):
            if parameter["ParameterKey"] == "CapacityType":
                return parameter["ParameterValue"]
    return "EC2"


def check_gpu_quota(runner: Runner, capacity_type: str = "EC2", *, force: bool = False) -> float | None:
    """The account's G-instance vCPU quota. Below one job's vCPUs (new accounts have 0) the deploy
    stops, since every job would wait until Batch cancels it, unless `force` (an increase may be on
    its way): then it only warns. A quota that cannot be read (not allowed) is a warning."""
    code, title = GPU_QUOTAS.get(capacity_type, GPU_QUOTAS["EC2"])
    try:
        answer = runner.call("service-quotas", "get_service_quota", ServiceCode="ec2", QuotaCode=code,
                             read={"Quota": {"Value": float(JOB_VCPUS)}})  # fmt: skip
    except (ClientError, BotoCoreError) as failure:
        runner.say(f"warning: could not read the EC2 quota '{title}' ({failure}); check it in Service Quotas")
        return None
    value = float(answer["Quota"]["Value"])
    if value < JOB_VCPUS:
        problem = (
            f"the EC2 quota '{title}' is {value:g} vCPUs in {runner.region}; one job needs {JOB_VCPUS}. "
            "Until an increase is granted every job waits 10 minutes and fails ('no GPU became free'). "
            f"Ask for one (Service Quotas > Amazon EC2 > {code}, at least {JOB_VCPUS} vCPUs)"
        )
        if not force:
            raise DeployError(f"{problem}, then deploy again; or deploy anyway with FORCE=1 (--force).")
        runner.say(f"warning: {problem}. Deploying anyway (FORCE=1).")
    return value


def sam_deploy_command(sam: str, stack: str, region: str, image_uri: str, parameters: list[str]) -> list[str]:
    return [
        sam, "deploy", "--config-file", SAMCONFIG, "--stack-name", stack, "--region", region,
        "--no-confirm-changeset", "--no-fail-on-empty-changeset",
        "--parameter-overrides", f"WorkerImageUri={image_uri}", *parameters,
    ]  # fmt: skip


def stack_outputs(runner: Runner, stack: str) -> dict[str, str]:
    read = {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": placeholder(k)} for k in PLACEHOLDER_OUTPUTS]}]}
    answer = runner.call("cloudformation", "describe_stacks", StackName=stack, read=read)
    return {o["OutputKey"]: o["OutputValue"] for o in answer["Stacks"][0].get("Outputs", [])}


def deploy(
    runner: Runner, stack: str, *, sam: str = "sam", parameters: list[str] | None = None, force: bool = False
) -> dict[str, Any]:
    check_stack_name(stack)  # before any AWS call: ECR refuses what CloudFormation takes
    parameters = list(parameters or [])
    for parameter in parameters:
        if "=" not in parameter or parameter.startswith("WorkerImageUri="):
            raise ValueError(f"--parameter {parameter!r}: give Name=Value (WorkerImageUri is the deploy's own)")
    account = account_id(runner)
    check_gpu_quota(runner, capacity_type(runner, stack, parameters), force=force)

    repository = image.ensure_repository(runner, stack, account)
    tag = image.image_tag()
    image_uri = f"{repository}:{tag}"
    if image.image_exists(runner, stack, tag):
        runner.say(f"# {image_uri} is in ECR already: the worker is not rebuilt")
    else:
        image.build_and_push(runner, image_uri)

    runner.run([sam, "build", "--config-file", SAMCONFIG], failed="sam build failed; the stack was not changed")
    # NoEcho parameters (the access key) are not printed
    secrets = [p.split("=", 1)[1] for p in parameters if p.split("=", 1)[0] in NO_ECHO]
    runner.run(
        sam_deploy_command(sam, stack, runner.region, image_uri, parameters), secrets=secrets,
        failed=f"sam deploy failed (CloudFormation rolls a failed update back; its events say why: aws "
               f"cloudformation describe-stack-events --stack-name {stack} --region {runner.region})",
    )  # fmt: skip

    outputs = stack_outputs(runner, stack)
    changes = site.publish(runner, outputs["ImagesBucketName"], outputs["WebSocketUrl"])
    invalidated = site.invalidate(runner, outputs["DistributionId"], changes)
    runner.say(f"# the site: {outputs['SiteUrl']}/  (WebSocket: {outputs['WebSocketUrl']})")
    return {"image": image_uri, "outputs": outputs, "uploaded": changes.uploaded, "deleted": changes.deleted,
            "invalidated": invalidated}  # fmt: skip
