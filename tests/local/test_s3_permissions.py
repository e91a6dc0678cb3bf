"""A missing key, as S3 answers it to each of the template's principals: 404 NoSuchKey to a caller
that may list the bucket there (s3:ListBucket with s3:prefix = the key), 403 AccessDenied to any
other (moto_fixes' s3_missing_keys, evaluated with the template's own policies). The worker's
role may list where it reads, so the real worker, run as its role, tells the user that a missing
image was not found."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from stylejob.job import BAD_INPUT
from stylelocal import iam, moto_fixes
from stylelocal.aws import REGION, LocalAws, principal_credentials

from .worker_harness import Pool, finished, worker_process


def s3_as(aws: LocalAws, principal: str) -> Any:
    credentials = principal_credentials(principal)
    return boto3.client(
        "s3", region_name=REGION, endpoint_url=aws.endpoint, config=Config(signature_version="s3v4"),
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"],
    )  # fmt: skip


def missing(aws: LocalAws, principal: str, key: str) -> tuple[int, int, str]:
    """(GET's status, HEAD's status, GET's error code) of a key that does not exist, as `principal`."""
    s3 = s3_as(aws, principal)
    answers = []
    for operation in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as failed:
            operation(Bucket=aws.refs["ImagesBucket"], Key=key)
        answers.append(failed.value.response)
    return (answers[0]["ResponseMetadata"]["HTTPStatusCode"], answers[1]["ResponseMetadata"]["HTTPStatusCode"],
            answers[0]["Error"]["Code"])  # fmt: skip


@pytest.mark.parametrize(
    ("principal", "key", "expected"),
    [
        # the worker lists where it reads: a missing photo or style is "not found"
        ("WorkerJobRole", "public/input/0123.jpg", (404, 404, "NoSuchKey")),
        ("WorkerJobRole", "private/input/0123.png", (404, 404, "NoSuchKey")),
        ("WorkerJobRole", "styles/gone.jpg", (404, 404, "NoSuchKey")),
        ("WorkerJobRole", "private/output/0123.jpg", (403, 403, "AccessDenied")),  # not where it reads
        # TRANSFER_STYLE lists uploads/ and styles/ only
        ("TransferStyleFunction", "uploads/0123456789abcdef0123456789abcdef.png", (404, 404, "NoSuchKey")),
        ("TransferStyleFunction", "private/input/0123.png", (403, 403, "AccessDenied")),
        # the preview may not list at all
        ("PreviewFunction", "public/input/0123.jpg", (403, 403, "AccessDenied")),
    ],
)
def test_a_missing_key_is_404_only_where_the_principal_may_list(aws: LocalAws, principal: str, key: str, expected):
    assert missing(aws, principal, key) == expected


def test_without_the_workers_listbucket_a_missing_image_is_access_denied(aws: LocalAws):
    """The template before the worker's ListBucket: the case the local stack must tell apart."""
    statements = iam.identity_statements("WorkerJobRole", aws.resolve)
    without = [s for s in statements if "s3:ListBucket" not in s["Action"]]
    assert len(without) == len(statements) - 1
    moto_fixes.set_principals({"WorkerJobRole": without})
    try:
        assert missing(aws, "WorkerJobRole", "public/input/0123.jpg") == (403, 403, "AccessDenied")
    finally:
        aws.register_principals()


def test_keys_that_exist_and_other_callers_are_answered_as_before(aws: LocalAws):
    bucket = aws.refs["ImagesBucket"]
    aws.client("s3").put_object(Bucket=bucket, Key="public/input/here.jpg", Body=b"x")
    assert s3_as(aws, "PreviewFunction").get_object(Bucket=bucket, Key="public/input/here.jpg")["Body"].read() == b"x"
    with pytest.raises(ClientError) as failed:  # the tests' own credentials are no principal of the template
        aws.client("s3").get_object(Bucket=bucket, Key="public/input/gone.jpg")
    assert failed.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as failed:  # a missing bucket stays NoSuchBucket
        s3_as(aws, "PreviewFunction").get_object(Bucket="no-such-bucket", Key="a")
    assert failed.value.response["Error"]["Code"] == "NoSuchBucket"
    # a presigned GET answers as its signer: GET_JOB may not list, so a private result that is gone is 403
    url = s3_as(aws, "GetJobFunction").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "private/output/gone.jpg"}, ExpiresIn=60
    )
    assert requests.get(url, timeout=10).status_code == 403


def test_the_real_worker_as_its_role_says_a_missing_photo_was_not_found(aws: LocalAws):
    """`python -m stylize_worker` with its job role's credentials (as the local Batch runner and
    ECS give them) takes a job whose photo was never stored: its reason is the user's, not a
    storage failure."""
    pool = Pool(aws)
    job = pool.job(content=None)  # its photo was never stored
    arn = pool.start(job)
    process = worker_process(pool, aws, WORKER_IDLE_SECONDS="2")

    code, lines = finished(process, timeout=180)

    assert code == 0
    execution = pool.machine.wait(arn, 10)
    assert execution["status"] == "FAILED"
    assert execution["error"] == BAD_INPUT
    assert execution["cause"].startswith("the content image was not found")
    assert [line["outcome"] for line in lines if line.get("message") == "stylize-worker job"] == ["failed"]
