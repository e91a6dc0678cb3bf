"""`make deploy` and `make destroy` (deploy/styledeploy): the dry run prints every step and calls
nothing; the image tag follows the code; the AWS steps run against moto, twice, to show that a
re-run changes only what changed; destroy removes what deploy made, and only when confirmed."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from styledeploy import image, site
from styledeploy.deploy import capacity_type, check_gpu_quota, deploy, stack_outputs
from styledeploy.destroy import destroy
from styledeploy.runner import ROOT, DeployError, Runner

from .conftest import REGION

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def dry_run(*args: str) -> list[str]:
    """`python -m styledeploy ... --dry-run` with no AWS credentials or endpoint: its lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = "/nonexistent"
    done = subprocess.run(
        [sys.executable, "-m", "styledeploy", *args, "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_dry_run_of_deploy_prints_every_step_in_order():
    lines = dry_run("deploy", "--stack", "demo", "--region", "ap-east-1", "--sam", "sam",
                    "--parameter", "AccessKey=s3cret", "--parameter", "MaxActiveJobs=8")  # fmt: skip
    tag = image.image_tag()
    uri = f"<ACCOUNT>.dkr.ecr.ap-east-1.amazonaws.com/demo-worker:{tag}"
    expected_in_order = [
        "aws sts get_caller_identity",
        'aws service-quotas get_service_quota {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"}',
        "aws ecr create_repository",
        "aws ecr put_lifecycle_policy",
        "$ docker login --username AWS --password-stdin '<ACCOUNT>.dkr.ecr.ap-east-1.amazonaws.com'",
        f"$ docker pull --platform linux/amd64 {image.base_image()}",
        f"$ docker image inspect --format '{{{{json .RepoDigests}}}}' {image.base_image()}",
        "# base image pulled: pytorch/pytorch@<DIGEST>",
        "$ docker buildx imagetools inspect --format '{{json .Manifest}}' "
        "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime",
        f"$ docker build --platform linux/amd64 -f agent/Dockerfile -t '{uri}' .",
        f"$ docker push '{uri}'",
        "$ sam build --config-file samconfig.toml",
        "$ sam deploy --config-file samconfig.toml --stack-name demo --region ap-east-1 --no-confirm-changeset "
        f"--no-fail-on-empty-changeset --parameter-overrides 'WorkerImageUri={uri}' AccessKey=*** MaxActiveJobs=8",
        'aws cloudformation describe_stacks {"StackName": "demo"}',
        'aws s3 put_object {"Bucket": "<ImagesBucketName>", "Key": "web/index.html"',
        'aws s3 put_object {"Bucket": "<ImagesBucketName>", "Key": "web/config.json"',
        'aws s3 put_object {"Bucket": "<ImagesBucketName>", "Key": "styles/swirls.jpg"',
        'aws cloudfront create_invalidation {"DistributionId": "<DistributionId>"',
        "# the site: <SiteUrl>/",
    ]
    position = 0
    for expected in expected_in_order:
        found = [i for i, line in enumerate(lines) if i >= position and line.startswith(expected)]
        assert found, f"missing (or out of order): {expected}\n" + "\n".join(lines)
        position = found[0] + 1
    assert not any("s3cret" in line for line in lines)  # a NoEcho parameter is never printed
    assert not any("screenshots" in line or "README" in line for line in lines)


def test_the_dry_run_of_destroy_asks_nothing_and_deletes_nothing():
    lines = dry_run("destroy", "--stack", "demo", "--region", "eu-west-1")
    assert lines[-1] == "# dry run: nothing was deleted"
    for expected in ("aws s3 list_object_versions", 'aws cloudformation delete_stack {"StackName": "demo"}',
                     'aws ecr delete_repository {"repositoryName": "demo-worker", "force": true}',
                     'aws logs describe_log_groups {"logGroupNamePrefix": "/aws/lambda/demo-"}'):  # fmt: skip
        assert any(line.startswith(expected) for line in lines), expected


def test_the_make_targets_pass_stack_region_and_parameters():
    make = subprocess.run(
        ["make", "-n", "deploy", "STACK=shop", "REGION=eu-central-2", "PARAMS=MaxActiveJobs=4 JobsPerConnection=2"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "-m styledeploy deploy --stack shop --region eu-central-2 --sam .venv-sam/bin/sam" in make
    assert "--parameter MaxActiveJobs=4 --parameter JobsPerConnection=2" in make
    destroy_ = subprocess.run(["make", "-n", "destroy", "YES=1"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "-m styledeploy destroy --stack style-transfer --region us-east-1 --yes" in destroy_


def test_the_samconfig_deploys_with_iam_capability_and_no_prompt():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["deploy"]["parameters"]
    assert config["capabilities"] == "CAPABILITY_IAM"
    assert config["confirm_changeset"] is False
    assert config["resolve_s3"] is True


# --- the image ------------------------------------------------------------------------------------


def copy_build_context(tmp_path: Path) -> Path:
    for path in image.build_files():
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return tmp_path


def test_the_image_tag_changes_with_the_workers_code_and_nothing_else(tmp_path: Path):
    root = copy_build_context(tmp_path)
    tag = image.image_tag(root)
    assert tag == image.image_tag(ROOT)  # where the files are does not matter
    assert tag.startswith("code-")
    assert len(tag) == 21
    (root / "agent/stylize_worker/__pycache__").mkdir(exist_ok=True)
    (root / "agent/stylize_worker/__pycache__/serve.cpython-311.pyc").write_bytes(b"bytecode")
    (root / "README.md").write_text("not in the image")
    assert image.image_tag(root) == tag
    serve = root / "agent/stylize_worker/serve.py"
    serve.write_text(serve.read_text() + "\n# a change\n")
    assert image.image_tag(root) != tag
    serve.rename(root / "agent/stylize_worker/moved.py")  # a rename is a change too
    assert image.image_tag(root) != tag


def test_the_image_tag_covers_every_folder_the_image_copies(tmp_path: Path):
    """safeimage, stylejob and workerpool live in the Lambda layer but the worker's image copies
    them: a change there is a new image too."""
    assert image.context_folders() == [
        "agent/styletransfer", "agent/stylize_worker", "layers/common/safeimage", "layers/common/stylejob",
        "layers/common/workerpool",
    ]  # fmt: skip
    root = copy_build_context(tmp_path)
    tag = image.image_tag(root)
    reading = root / "layers/common/safeimage/__init__.py"
    reading.write_text(reading.read_text() + "\n# a change\n")
    assert image.image_tag(root) != tag
    (root / "layers/common/styleservice").mkdir(parents=True)
    (root / "layers/common/styleservice/jobs.py").write_text("# not in the image")
    reading.write_text(reading.read_text().removesuffix("\n# a change\n"))
    assert image.image_tag(root) == tag


def test_the_base_image_is_pinned_by_digest_and_its_torch_is_the_projects():
    import tomllib

    base = image.base_image()
    torch = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                 if d.startswith("torch=="))  # fmt: skip
    assert re.fullmatch(r"pytorch/pytorch:(\S+)-cuda13\.0-cudnn9-runtime@sha256:[0-9a-f]{64}", base)
    assert base.split(":")[1].split("-")[0] == torch.removeprefix("torch==")


FAKE_DOCKER = """#!/bin/sh
# docker as the deploy calls it: each call logged; $FAIL names the subcommand that fails
echo "$*" >> "$CALLS"
case "$1" in
  "$FAIL") echo "fake docker: $1 failed" >&2; exit 1 ;;
  image) echo '["pytorch/pytorch@'"$PULLED"'"]' ;;
  buildx) echo '{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "'"$TODAY"'", "size": 1}' ;;
esac
exit 0
"""
FAKE_SAM = """#!/bin/sh
echo "sam $*" >> "$CALLS"
[ "$1" = "$FAIL" ] && { echo "fake sam: $1 failed" >&2; exit 1; }
exit 0
"""


def deploy_with_fakes(
    tmp_path: Path, moto_endpoint: str, fail: str, today: str = ""
) -> tuple[int, str, str, list[str]]:
    """`python -m styledeploy deploy` for real against moto, with docker and sam replaced by scripts
    (outside this process: what they print and how they exit); (status, stdout, stderr, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, script in (("docker", FAKE_DOCKER), ("sam", FAKE_SAM)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    pinned = image.base_image().split("@")[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", CALLS=str(calls), FAIL=fail, PULLED=pinned, TODAY=today or pinned,
               AWS_ENDPOINT_URL=moto_endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "styledeploy", "deploy", "--stack", "demo", "--region", REGION, "--sam", "sam"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr, calls.read_text().splitlines()


def test_a_failed_build_stops_the_deploy_with_a_clear_message(tmp_path: Path, aws: Any, moto_endpoint: str):
    status, out, err, calls = deploy_with_fakes(tmp_path, moto_endpoint, fail="build")
    assert status == 1
    assert err.strip().splitlines()[-1] == (
        "styledeploy deploy: the worker image did not build; nothing was pushed and the stack was not changed: "
        "`docker build` exited with status 1 (its output is above)"
    )
    assert "Traceback" not in err
    assert [c.split()[0] for c in calls] == ["login", "pull", "image", "buildx", "build"]  # no push, no sam
    assert f"# base image pulled: pytorch/pytorch@{image.base_image().split('@')[1]}" in out
    assert "the pin is current" in out


def test_a_base_image_that_cannot_be_pulled_or_a_failed_sam_deploy_stops_with_what_failed(
    tmp_path: Path, aws: Any, moto_endpoint: str
):
    status, _, err, calls = deploy_with_fakes(tmp_path, moto_endpoint, fail="pull")
    assert status == 1
    assert "the worker's base image pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime@sha256:" in err
    assert "could not be pulled" in err
    assert not any(c.startswith(("build", "sam")) for c in calls)

    moved = "sha256:" + "1" * 64
    status, out, err, calls = deploy_with_fakes(tmp_path, moto_endpoint, fail="deploy", today=moved)
    assert status == 1
    assert f"names {moved} today, not the pinned" in out  # a moved tag is said, and the pin still builds
    assert "styledeploy deploy: sam deploy failed (CloudFormation rolls a failed update back" in err
    assert [c.split()[:2] for c in calls if c.startswith("sam")] == [["sam", "build"], ["sam", "deploy"]]


def test_the_repository_is_made_once_with_its_lifecycle_policy(runner: Runner, aws: Any):
    uri = image.ensure_repository(runner, "demo", "123456789012")
    assert uri == f"123456789012.dkr.ecr.{REGION}.amazonaws.com/demo-worker"
    assert image.ensure_repository(runner, "demo", "123456789012") == uri  # a re-run: no error, no second one
    ecr = aws("ecr")
    [repository] = ecr.describe_repositories()["repositories"]
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["imageTagMutability"] == "IMMUTABLE"
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName="demo-worker")["lifecyclePolicyText"])
    assert policy == image.LIFECYCLE_POLICY
    assert not image.image_exists(runner, "demo", "code-0000")
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": {}, "layers": []}
    ecr.put_image(repositoryName="demo-worker", imageTag="code-0000", imageManifest=json.dumps(manifest))
    assert image.image_exists(runner, "demo", "code-0000")  # so a re-run skips build and push


def quota(runner: Runner, monkeypatch: pytest.MonkeyPatch, vcpus: float) -> list[str]:
    """Service Quotas answers `vcpus` for every quota (moto has no EC2 quotas); the codes asked for."""
    asked: list[str] = []

    def answer(**request: str) -> dict[str, Any]:
        asked.append(request["QuotaCode"])
        return {"Quota": {"QuotaCode": request["QuotaCode"], "Value": vcpus}}

    monkeypatch.setattr(runner.client("service-quotas"), "get_service_quota", answer)
    return asked


def test_a_gpu_quota_that_cannot_run_one_job_stops_the_deploy_before_anything_is_made(
    runner: Runner, aws: Any, monkeypatch: pytest.MonkeyPatch
):
    quota(runner, monkeypatch, 0.0)
    with pytest.raises(DeployError) as stopped:
        deploy(runner, "demo", sam="/nonexistent/sam")
    assert "is 0 vCPUs in eu-west-1; one job needs 4" in str(stopped.value)
    assert "L-DB2E81BA" in str(stopped.value)
    assert "FORCE=1" in str(stopped.value)
    assert aws("ecr").describe_repositories()["repositories"] == []  # nothing was made
    assert not any(line.startswith("$ ") for line in runner.printed)  # no docker, no sam


def test_forced_a_low_gpu_quota_is_a_warning_and_a_sufficient_one_says_nothing(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
):
    quota(runner, monkeypatch, 2.0)
    assert check_gpu_quota(runner, force=True) == 2
    assert runner.printed[-1].startswith("warning: the EC2 quota 'Running On-Demand G and VT instances' is 2 vCPUs")
    assert runner.printed[-1].endswith("Deploying anyway (FORCE=1).")
    quota(runner, monkeypatch, 4.0)
    printed = len(runner.printed)
    assert check_gpu_quota(runner) == 4
    assert len(runner.printed) == printed + 1  # only the call itself


def test_the_quota_checked_is_the_spot_one_when_the_stack_runs_on_spot(runner: Runner, aws: Any,
                                                                      monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    asked = quota(runner, monkeypatch, 8.0)
    assert capacity_type(runner, "demo", []) == "EC2"  # no stack yet: the template's default
    assert capacity_type(runner, "demo", ["CapacityType=SPOT"]) == "SPOT"
    template = {"Parameters": {"CapacityType": {"Type": "String", "Default": "EC2"}},
                "Resources": {"ImagesBucket": {"Type": "AWS::S3::Bucket"}}}  # fmt: skip
    spot = [{"ParameterKey": "CapacityType", "ParameterValue": "SPOT"}]
    aws("cloudformation").create_stack(StackName="demo", TemplateBody=json.dumps(template), Parameters=spot)
    assert capacity_type(runner, "demo", []) == "SPOT"  # a re-deploy keeps the deployed value
    check_gpu_quota(runner, capacity_type(runner, "demo", []))
    assert asked == ["L-3819A6DF"]


def test_make_deploy_passes_force():
    make = subprocess.run(["make", "-n", "deploy", "FORCE=1"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "-m styledeploy deploy --stack style-transfer" in make.stdout
    assert make.stdout.rstrip().endswith("--force")


# --- the site -------------------------------------------------------------------------------------


def site_fixture(aws: Any) -> tuple[str, str]:
    aws("s3").create_bucket(Bucket="images", CreateBucketConfiguration={"LocationConstraint": REGION})
    distribution = aws("cloudfront").create_distribution(DistributionConfig={
        "CallerReference": "test", "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "images", "DomainName": "images.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "images", "ViewerProtocolPolicy": "redirect-to-https",
                                 "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"},
    })["Distribution"]["Id"]  # fmt: skip
    return "images", distribution


def test_the_site_is_published_then_only_changes_are_uploaded_and_invalidated(runner: Runner, aws: Any, tmp_path: Path):
    bucket, distribution = site_fixture(aws)
    web = tmp_path / "web"
    shutil.copytree(ROOT / "web", web)
    (web / "old.html").write_text("a page that will be removed")
    s3 = aws("s3")

    first = site.publish(runner, bucket, "wss://abc.execute-api.eu-west-1.amazonaws.com/prod", web)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {"web/index.html", "web/feed.html", "web/client.js", "web/config.json", "styles/swirls.jpg"} <= keys
    assert not any("screenshots" in key for key in keys)
    config = json.loads(s3.get_object(Bucket=bucket, Key="web/config.json")["Body"].read())
    assert config == {"websocketUrl": "wss://abc.execute-api.eu-west-1.amazonaws.com/prod"}
    page = s3.head_object(Bucket=bucket, Key="web/client.js")
    assert page["ContentType"] == "text/javascript; charset=utf-8"
    assert s3.head_object(Bucket=bucket, Key="web/config.json")["CacheControl"] == "no-cache"
    assert "/web/config.json" in first.paths
    assert "/styles/catalogue.json" in first.paths
    assert len(first.paths) > site.INVALIDATE_ALL_OVER
    assert site.invalidate(runner, distribution, first) == ["/styles/*", "/web/*"]  # one wildcard per area

    assert site.publish(runner, bucket, "wss://abc.execute-api.eu-west-1.amazonaws.com/prod", web).paths == []
    assert site.invalidate(runner, distribution, site.SiteChanges()) == []  # nothing changed, nothing invalidated

    (web / "old.html").unlink()
    (web / "index.html").write_text((web / "index.html").read_text() + "<!-- changed -->")
    third = site.publish(runner, bucket, "wss://abc.execute-api.eu-west-1.amazonaws.com/prod", web)
    assert (third.uploaded, third.deleted) == (["web/index.html"], ["web/old.html"])
    assert site.invalidate(runner, distribution, third) == ["/web/index.html", "/web/old.html"]
    many = site.SiteChanges(uploaded=[f"web/p{n}.html" for n in range(20)], deleted=["styles/a.jpg"])
    assert site.invalidate(runner, distribution, many) == ["/styles/*", "/web/*"]  # one wildcard per area
    invalidations = aws("cloudfront").list_invalidations(DistributionId=distribution)["InvalidationList"]
    assert invalidations["Quantity"] == 3
    assert "web/old.html" not in {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}


def test_a_style_the_operator_added_is_left_alone(runner: Runner, aws: Any):
    bucket, _ = site_fixture(aws)
    aws("s3").put_object(Bucket=bucket, Key="styles/my-own-style.jpg", Body=b"\xff\xd8\xff their own")
    site.publish(runner, bucket, "wss://x/prod")
    assert (
        aws("s3").get_object(Bucket=bucket, Key="styles/my-own-style.jpg")["Body"].read() == b"\xff\xd8\xff their own"
    )


# --- destroy --------------------------------------------------------------------------------------

STACK_TEMPLATE = {
    "Resources": {
        "ImagesBucket": {"Type": "AWS::S3::Bucket"},
        "WorkerLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/aws/batch/demo-worker"}},
    },
    "Outputs": {"ImagesBucketName": {"Value": {"Ref": "ImagesBucket"}}},
}


def deployed(aws: Any) -> str:
    """A stack named demo with a bucket full of objects, the worker's repository, and a log group
    a function re-created after the stack had deleted its own."""
    aws("cloudformation").create_stack(StackName="demo", TemplateBody=json.dumps(STACK_TEMPLATE))
    bucket = stack_outputs(Runner(REGION, client_factory=aws, out=io.StringIO()), "demo")["ImagesBucketName"]
    for n in range(3):
        aws("s3").put_object(Bucket=bucket, Key=f"public/output/{n}.jpg", Body=b"x")
    aws("ecr").create_repository(repositoryName="demo-worker")
    aws("logs").create_log_group(logGroupName="/aws/lambda/demo-NotifyFunction-AbC123")
    aws("logs").create_log_group(logGroupName="/aws/lambda/other-stack-Function")  # not ours
    return bucket


def test_destroy_removes_the_stack_its_bucket_its_images_and_its_logs(runner: Runner, aws: Any):
    bucket = deployed(aws)
    assert destroy(runner, "demo", yes=True)
    assert aws("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"] == []
    assert bucket not in [b["Name"] for b in aws("s3").list_buckets()["Buckets"]]
    assert aws("ecr").describe_repositories()["repositories"] == []
    groups = [g["logGroupName"] for g in aws("logs").describe_log_groups()["logGroups"]]
    assert groups == ["/aws/lambda/other-stack-Function"]
    assert "# stack demo and everything it made are deleted" in runner.printed


def test_destroy_asks_first_and_an_unconfirmed_destroy_touches_nothing(runner: Runner, aws: Any):
    bucket = deployed(aws)
    questions: list[str] = []
    assert not destroy(runner, "demo", ask=lambda q: questions.append(q) or "yes")
    assert "Type the stack's name" in questions[0]
    assert len(aws("s3").list_objects_v2(Bucket=bucket)["Contents"]) == 3
    assert aws("ecr").describe_repositories()["repositories"] != []
    assert destroy(runner, "demo", ask=lambda q: "demo")  # the name itself confirms


# --- the stack's name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Demo", "capital letters, and ECR refuses them in the worker's repository name (try 'demo')"),
        ("style_transfer", "only letters, digits and single hyphens"),
        ("9lives", "must start with a letter"),
        ("double--hyphen", "single hyphens"),
        ("trailing-", "single hyphens"),
        ("a" * 54, "at most 53"),
    ],
)
def test_a_stack_name_aws_would_refuse_is_refused_before_any_aws_call(name: str, why: str):
    """Not a dry run: the real command, with an AWS endpoint where nothing listens. A name check
    that came after the first AWS call would fail on the connection instead, and say so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_MAX_ATTEMPTS="1")  # fmt: skip
    for command in ("deploy", "destroy", "smoke"):
        extra = ["--yes"] if command == "destroy" else []
        done = subprocess.run(
            [sys.executable, "-m", "styledeploy", command, "--stack", name, *extra],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"the stack name {name!r} cannot be used" in done.stderr or "at most 53" in done.stderr
        assert why in done.stderr
        assert "Could not connect" not in done.stderr
        assert done.stdout == ""


def test_every_name_derived_from_a_valid_stack_name_is_valid():
    from styledeploy.names import check_stack_name

    longest = "s" + "-a1" * 17 + "b"  # 53 characters, hyphens in between
    for name in ("style-transfer", "demo", "a", "prod-2", longest):
        assert check_stack_name(name) == name
        assert re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", image.repository_name(name))  # ECR's rule
        assert len(f"{name}-site-index") <= 64  # the CloudFront Function's limit
    assert len(longest) == 53


# --- the deploy tooling's own environment ---------------------------------------------------------

# Run in a fresh interpreter in which torch, the styletransfer package and pydantic cannot be
# imported, with deploy/, local/ and the layer on the path, as the Makefile runs it from
# .venv-deploy (the catalogue's keys are the job contract's: stylejob.keys, which needs nothing).
WITHOUT_TORCH = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "styletransfer", "stylize_worker", "styleservice", "pydantic"):
            raise ImportError(f"{name} is not in the deploy tooling's environment")
        return None

sys.meta_path.insert(0, Refuse())
import styledeploy.__main__, styledeploy.smoke, styledeploy.site, styledeploy.env_vars
objects = styledeploy.site.styles()  # the whole catalogue, drawn styles included
assert "torch" not in sys.modules
print(len(objects), sorted(o.key for o in objects if o.key.startswith("styles/swirls")))
"""


def test_the_deploy_tooling_imports_and_reads_the_catalogue_without_torch():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = f"{ROOT / 'deploy'}:{ROOT / 'local'}:{ROOT / 'layers' / 'common'}"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    count, swirls = done.stdout.split(" ", 1)
    assert int(count) == len(site.styles())  # the same objects as with the engine installed
    assert swirls.strip() == "['styles/swirls.jpg']"


def test_the_deploy_tooling_has_a_light_environment_of_its_own_with_the_projects_pins():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, _, version = requirement.partition("==")
        pinned[name.split("[")[0].strip().lower()] = version.strip()
    lines = [line.split("#")[0].strip() for line in (ROOT / "deploy/requirements.txt").read_text().splitlines()]
    wanted = {name.lower(): version for name, version in (line.split("==") for line in lines if line)}
    assert set(wanted) == {"boto3", "websockets", "pillow", "numpy", "pyyaml"}
    assert wanted == {name: pinned[name] for name in wanted}
    for target in ("deploy", "smoke", "destroy"):
        make = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        command = next(line for line in make.splitlines() if "-m styledeploy" in line)
        assert ".venv-deploy/bin/python -m styledeploy" in command
        assert ".venv/" not in command
