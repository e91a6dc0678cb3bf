"""`make destroy`: everything `make deploy` made, gone: the bucket emptied (CloudFormation cannot
delete a bucket with objects in it), the stack deleted and waited for, then what lives outside the
stack: the worker's ECR repository with its images, and log groups a late invocation re-created
after the stack deleted its own. It asks first, unless told not to (--yes)."""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import ClientError

from . import image
from .names import check_stack_name
from .runner import Runner


def log_group_prefixes(stack: str) -> list[str]:
    """The stack's log groups: SAM names functions <stack>-<LogicalId>-<suffix>; the worker's and the
    state machine's groups are named in template.yaml."""
    return [f"/aws/lambda/{stack}-", f"/aws/batch/{stack}-worker", f"/aws/vendedlogs/states/{stack}-transfer"]


def stack_bucket(runner: Runner, stack: str) -> str | None:
    try:
        answer = runner.call("cloudformation", "describe_stack_resource", StackName=stack,
                             LogicalResourceId="ImagesBucket",
                             read={"StackResourceDetail": {"PhysicalResourceId": "<ImagesBucketName>"}})  # fmt: skip
    except ClientError as failure:  # no such stack (already gone), or no such resource
        runner.say(f"# no ImagesBucket in stack {stack}: {failure.response['Error']['Message']}")
        return None
    return answer["StackResourceDetail"]["PhysicalResourceId"]


def empty_bucket(runner: Runner, bucket: str) -> int:
    """Deletes every object version and delete marker; the number deleted."""
    if runner.dry_run:
        runner.call("s3", "list_object_versions", Bucket=bucket)
        runner.call("s3", "delete_objects", Bucket=bucket, Delete={"Objects": "<every version listed>"})
        return 0
    deleted = 0
    marker: dict[str, str] = {}
    while True:
        page = runner.call("s3", "list_object_versions", Bucket=bucket, quiet=True, **marker)
        objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                   for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]  # fmt: skip
        if objects:
            runner.call("s3", "delete_objects", Bucket=bucket, Delete={"Objects": objects, "Quiet": True}, quiet=True)
            deleted += len(objects)
        if not page.get("IsTruncated"):
            return deleted
        marker = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}


def delete_repository(runner: Runner, stack: str) -> None:
    try:
        runner.call("ecr", "delete_repository", repositoryName=image.repository_name(stack), force=True)
    except ClientError as failure:
        if failure.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise


def delete_log_groups(runner: Runner, stack: str) -> list[str]:
    gone = []
    for prefix in log_group_prefixes(stack):
        answer = runner.call("logs", "describe_log_groups", logGroupNamePrefix=prefix,
                             read={"logGroups": [{"logGroupName": "<each group listed>"}]})  # fmt: skip
        for group in answer.get("logGroups", []):
            runner.call("logs", "delete_log_group", logGroupName=group["logGroupName"])
            gone.append(group["logGroupName"])
    return gone


def destroy(runner: Runner, stack: str, *, yes: bool = False, ask: Callable[[str], str] = input) -> bool:
    """False if the operator did not confirm (nothing is touched then)."""
    check_stack_name(stack)
    if not yes and not runner.dry_run:
        answer = ask(
            f"This deletes stack {stack} in {runner.region} with every image, job and log, and the worker's "
            f"images. Type the stack's name to go on: "
        )
        if answer.strip() != stack:
            runner.say("# not confirmed: nothing was deleted")
            return False
    bucket = stack_bucket(runner, stack)
    if bucket:
        deleted = empty_bucket(runner, bucket)
        if not runner.dry_run:
            runner.say(f"# {bucket}: {deleted} object versions deleted")
    runner.call("cloudformation", "delete_stack", StackName=stack)
    runner.say("# waiting for CloudFormation to delete the stack (the CloudFront distribution takes minutes)")
    if not runner.dry_run:
        runner.client("cloudformation").get_waiter("stack_delete_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 10, "MaxAttempts": 360}
        )
    delete_repository(runner, stack)
    delete_log_groups(runner, stack)
    done = "# dry run: nothing was deleted" if runner.dry_run else f"# stack {stack} and everything it made are deleted"
    runner.say(done)
    return True
