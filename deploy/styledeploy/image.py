"""The GPU worker's image: its tag, derived from exactly what goes into it, and its ECR repository
with a lifecycle policy. Docker is only ever run through the Runner (printed; skipped in a dry run)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from botocore.exceptions import ClientError

from .runner import ROOT, DeployError, Runner

DOCKERFILE = "agent/Dockerfile"
PLATFORM = "linux/amd64"  # Batch's g5/g6 instances; an arm64 laptop would otherwise build arm64
KEEP_IMAGES = 10

LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "layers left untagged by a later push of the same tag",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                          "countNumber": 1},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"the {KEEP_IMAGES} newest images: the deployed one and a few to roll back to",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
            "action": {"type": "expire"},
        },
    ]
}  # fmt: skip


def context_folders(root: Path = ROOT) -> list[str]:
    """What agent/Dockerfile copies: the folders its .dockerignore lets in (after a leading `*`)."""
    lines = (root / f"{DOCKERFILE}.dockerignore").read_text().split()
    return [line[1:] for line in lines if line.startswith("!")]


def build_files(root: Path = ROOT) -> list[Path]:
    """The files the image is built from, in a stable order (bytecode caches left out)."""
    files = [root / DOCKERFILE, root / f"{DOCKERFILE}.dockerignore"]
    for folder in context_folders(root):
        files += sorted(
            p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
    return files


def image_tag(root: Path = ROOT) -> str:
    """A tag that changes exactly when the image's inputs change (paths and contents, committed or
    not): a new tag makes `sam deploy` register a new job definition revision, and an unchanged
    worker is neither rebuilt nor pushed."""
    digest = hashlib.sha256()
    for path in build_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "code-" + digest.hexdigest()[:16]


def repository_name(stack: str) -> str:
    return f"{stack}-worker"


def ensure_repository(runner: Runner, stack: str, account: str) -> str:
    """The stack's ECR repository (created once, scanned on push, tags immutable) with its lifecycle
    policy put every time (so a change of the policy here reaches the account); its URI."""
    name = repository_name(stack)
    try:
        runner.call("ecr", "describe_repositories", repositoryNames=[name], read={"repositories": []})
        exists = not runner.dry_run
    except ClientError as failure:
        if failure.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise
        exists = False
    if not exists:
        runner.call(
            "ecr", "create_repository", repositoryName=name, imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability="IMMUTABLE", encryptionConfiguration={"encryptionType": "AES256"},
        )  # fmt: skip
    runner.call("ecr", "put_lifecycle_policy", repositoryName=name, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY))
    return f"{account}.dkr.ecr.{runner.region}.amazonaws.com/{name}"


def image_exists(runner: Runner, stack: str, tag: str) -> bool:
    try:
        found = runner.call(
            "ecr", "describe_images", repositoryName=repository_name(stack), imageIds=[{"imageTag": tag}],
            read={"imageDetails": []},
        )  # fmt: skip
    except ClientError as failure:
        if failure.response["Error"]["Code"] in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return False
        raise
    return bool(found.get("imageDetails"))


def base_image(root: Path = ROOT) -> str:
    """The Dockerfile's default BASE_IMAGE: `repository:tag@sha256:<digest>`."""
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", (root / DOCKERFILE).read_text(), re.M)
    if not found:
        raise DeployError(f"{DOCKERFILE} has no `ARG BASE_IMAGE=...` line")
    return found.group(1)


def check_base_image(runner: Runner, base: str) -> str:
    """Pulls the pinned base image and prints the digest pulled, and the digest its tag names on the
    registry today (the pin's digest could not be checked against Docker Hub when it was chosen:
    docs/deployment.md). A pin that cannot be pulled stops the deploy; a tag that moved only says
    so, since the pin is what builds. The digest pulled."""
    name, _, pinned = base.partition("@")
    runner.run(["docker", "pull", "--platform", PLATFORM, base],
               failed=f"the worker's base image {base} could not be pulled (see docs/deployment.md, "
                      "\"The worker's base image\")")  # fmt: skip
    shown = runner.output(
        ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", base],
        read=json.dumps([f"{name.rsplit(':', 1)[0]}@<DIGEST>"]), failed="the pulled base image cannot be inspected",
    )  # fmt: skip
    repository = name.rsplit(":", 1)[0]
    digests = [d.split("@", 1)[1] for d in json.loads(shown or "[]") if d.startswith(f"{repository}@")]
    pulled = pinned if pinned in digests else (digests[0] if digests else "<unknown>")
    runner.say(f"# base image pulled: {repository}@{pulled}")
    try:
        manifest = runner.output(["docker", "buildx", "imagetools", "inspect", "--format", "{{json .Manifest}}", name],
                                 read=json.dumps({"digest": "<DIGEST>"}))  # fmt: skip
        today = json.loads(manifest)["digest"]
    except (DeployError, ValueError, KeyError, TypeError) as failure:
        runner.say(f"warning: could not read what {name} names on the registry today ({failure})")
        return pulled
    if runner.dry_run:
        runner.say(f"# {name} names {today} today")
    elif today == pinned:
        runner.say(f"# {name} names {today} today: the pin is current")
    else:
        runner.say(
            f"# {name} names {today} today, not the pinned {pinned}: the build uses the pin; to move to the "
            f"tag's image, check it and update BASE_IMAGE in {DOCKERFILE}"
        )
    return pulled


def build_and_push(runner: Runner, image: str) -> None:
    """docker login (a token from ECR, passed on stdin), the base image pulled and its digest
    printed, build for linux/amd64, push. A step that fails stops the deploy (DeployError) before
    the stack is touched."""
    registry = image.split("/", 1)[0]
    token = runner.call("ecr", "get_authorization_token", read={"authorizationData": []})
    password = ""
    if token.get("authorizationData"):
        password = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode().split(":", 1)[1]
    runner.run(["docker", "login", "--username", "AWS", "--password-stdin", registry], stdin=password,
               shown_stdin="(the ECR token)", failed="docker could not log in to ECR")  # fmt: skip
    check_base_image(runner, base_image())
    runner.run(["docker", "build", "--platform", PLATFORM, "-f", DOCKERFILE, "-t", image, "."],
               failed="the worker image did not build; nothing was pushed and the stack was not changed")  # fmt: skip
    runner.run(["docker", "push", image],
               failed="the worker image could not be pushed to ECR; the stack was not changed")  # fmt: skip
