"""The local bucket enforces presigned POST policies and presigned GET signatures as S3 does
(stylelocal.s3_auth, applied by moto_fixes' s3_presigned): each break of a policy that issue 12
found moto accepting is refused here, and nothing is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from botocore.config import Config
from stylelocal import s3_auth
from stylelocal.aws import FAKE_CREDENTIALS, LocalAws

PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)
KEY = "uploads/5f2b9c0e7d3a4b1c8e6f0a2d4c7b9e13.png"
SECRETS = {FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]: FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


def signing_s3(aws: LocalAws) -> Any:
    import boto3

    return boto3.client(
        "s3",
        region_name=aws.region,
        endpoint_url=aws.endpoint,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(signature_version="s3v4"),
    )


def policy(aws: LocalAws, size: int = len(PNG)) -> dict[str, Any]:
    """What REQUEST_UPLOAD hands out: this key, this Content-Type, 1..size bytes."""
    return signing_s3(aws).generate_presigned_post(
        Bucket=aws.refs["ImagesBucket"],
        Key=KEY,
        Fields={"Content-Type": "image/png"},
        Conditions=[{"Content-Type": "image/png"}, ["content-length-range", 1, size]],
        ExpiresIn=900,
    )


def upload(post: dict[str, Any], data: bytes = PNG, **changes: str | Callable[[str], str] | None) -> requests.Response:
    """POSTs the form with some fields changed: a value, None (left out), or a function of the field's value."""
    own = post["fields"]
    fields = {**own, **{name: value(own[name]) if callable(value) else value for name, value in changes.items()}}
    fields = {name: value for name, value in fields.items() if value is not None}
    return requests.post(post["url"], data=fields, files={"file": ("photo.png", data)}, timeout=10)


def stored(aws: LocalAws) -> list[str]:
    found = aws.client("s3").list_objects_v2(Bucket=aws.refs["ImagesBucket"]).get("Contents", [])
    return [item["Key"] for item in found]


def test_an_upload_within_its_policy_is_stored(aws):
    response = upload(policy(aws))
    assert response.status_code == 204, response.text
    assert stored(aws) == [KEY]


@pytest.mark.parametrize(
    ("case", "data", "changes", "status", "code"),
    [
        ("larger than declared", PNG + b"x", {}, 400, "EntityTooLarge"),
        ("empty", b"", {}, 400, "EntityTooSmall"),
        ("another Content-Type", PNG, {"Content-Type": "image/jpeg"}, 403, "AccessDenied"),
        ("a style's key", PNG, {"key": "styles/x.jpg"}, 403, "AccessDenied"),
        ("another job's result", PNG, {"key": f"public/output/{'0' * 32}.jpg"}, 403, "AccessDenied"),
        ("a field the policy does not allow", PNG, {"acl": "public-read"}, 403, "AccessDenied"),
        ("a tampered signature", PNG, {"x-amz-signature": "0" * 64}, 403, "SignatureDoesNotMatch"),
        ("no signature", PNG, {"x-amz-signature": None}, 403, "AccessDenied"),
        ("no policy", PNG, {"policy": None}, 403, "AccessDenied"),
        # another key in the form's own credential scope (its date is the day the form was made)
        ("an unknown access key", PNG, {"x-amz-credential": lambda scope: "AKIDOTHER/" + scope.split("/", 1)[1]},
         403, "InvalidAccessKeyId"),
    ],
)  # fmt: skip
def test_an_upload_that_breaks_its_policy_is_refused(aws, case, data, changes, status, code):
    response = upload(policy(aws), data, **changes)
    assert response.status_code == status, (case, response.text)
    assert f"<Code>{code}</Code>" in response.text
    assert stored(aws) == []


def test_a_policy_whose_own_text_was_changed_is_refused(aws):
    import base64
    import json

    post = policy(aws)
    document = json.loads(base64.b64decode(post["fields"]["policy"]))
    document["conditions"][1] = ["content-length-range", 1, 10**9]  # a bigger file, same signature
    forged = base64.b64encode(json.dumps(document).encode()).decode()
    response = upload(post, PNG + bytes(1000), policy=forged)
    assert (response.status_code, "SignatureDoesNotMatch" in response.text) == (403, True)


def test_an_expired_policy_is_refused():
    form = {"Content-Type": "image/png", "key": KEY}
    document = {"expiration": "2020-01-01T00:00:00Z", "conditions": [{"bucket": "b"}]}
    with pytest.raises(s3_auth.Refused, match="Policy expired"):
        signed_post(form, document)


def signed_post(form: dict[str, str], document: dict[str, Any]) -> None:
    import base64
    import json

    from botocore.auth import S3SigV4PostAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    request = AWSRequest()
    request.context["timestamp"] = "20261126T000000Z"
    signature = S3SigV4PostAuth(Credentials("testing", "testing"), "s3", "us-east-1").signature(encoded, request)
    fields = {
        **form,
        "policy": encoded,
        "x-amz-signature": signature,
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "testing/20261126/us-east-1/s3/aws4_request",
        "x-amz-date": "20261126T000000Z",
    }
    s3_auth.check_post(fields, 10, "b", SECRETS)


def test_a_presigned_get_is_served_and_a_tampered_one_refused(aws):
    bucket = aws.refs["ImagesBucket"]
    s3 = signing_s3(aws)
    s3.put_object(Bucket=bucket, Key="private/output/a.jpg", Body=b"\xff\xd8private a")
    s3.put_object(Bucket=bucket, Key="private/output/b.jpg", Body=b"\xff\xd8private b")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "private/output/a.jpg"})
    assert requests.get(url, timeout=10).content == b"\xff\xd8private a"
    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    tampered = url.replace(signature, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    other_key = url.replace("/a.jpg?", "/b.jpg?")
    longer = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=604800")
    for bad in (tampered, other_key, longer):
        response = requests.get(bad, timeout=10)
        assert response.status_code == 403, bad
        assert "SignatureDoesNotMatch" in response.text
        assert b"private" not in response.content


def test_an_expired_presigned_get_is_refused(aws):
    s3 = signing_s3(aws)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
    later = datetime.now(UTC) + timedelta(seconds=61)
    with pytest.raises(s3_auth.Refused, match="expired"):
        s3_auth.check_presigned_query("GET", url, {"host": url.split("/")[2]}, SECRETS, now=later)
    s3_auth.check_presigned_query("GET", url, {"host": url.split("/")[2]}, SECRETS)  # live: accepted
