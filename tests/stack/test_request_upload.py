"""REQUEST_UPLOAD against moto: each event file under events/request_upload/, and a real
multipart POST of a file to the URL and fields it returns."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import requests

from .local_aws import LocalAws, event
from .routes_support import PNG, answer, assert_nothing_started, bucket, event_files, keys_under, refusal

FUNCTION = "RequestUploadFunction"
LIMIT = 20 * 1024 * 1024  # settings.max_upload_bytes when the template sets no MAX_UPLOAD_BYTES
READY = {"png": ("image/png", "png"), "jpeg_at_the_limit": ("image/jpeg", "jpg")}
REFUSED = {
    "too_large": f"size: {LIMIT + 1} bytes is over the upload limit of {LIMIT} bytes",
    "zero_size": "size: Input should be greater than 0",
    "size_string": "size: Input should be a valid integer",
    "gif": "contentType: Input should be 'image/jpeg', 'image/png' or 'image/webp'",
    "missing_content_type": "contentType is required",
    "bad_json": "the message is not valid JSON",
}


def test_every_event_file_has_an_expectation():
    names = {path.split("/")[1].removesuffix(".json") for path in event_files("request_upload")}
    assert names == set(READY) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_clear_message(aws: LocalAws, name: str):
    assert refusal(aws.invoke(FUNCTION, f"request_upload/{name}.json")) == REFUSED[name]
    assert keys_under(aws, "uploads/") == []
    assert_nothing_started(aws)


@pytest.mark.parametrize("name", sorted(READY))
def test_the_post_policy_allows_exactly_this_key_type_and_size(aws: LocalAws, name: str):
    content_type, extension = READY[name]
    size = json.loads(event(f"request_upload/{name}.json")["body"])["size"]
    event_name, ready = answer(aws.invoke(FUNCTION, f"request_upload/{name}.json"))
    assert event_name == "UPLOAD_READY"
    assert set(ready) == {"key", "url", "fields", "expiresIn"}
    assert re.fullmatch(rf"uploads/[0-9a-f]{{32}}\.{extension}", ready["key"])
    assert ready["expiresIn"] == 900  # the template's PresignedUrlSeconds
    assert ready["url"].rstrip("/").endswith(bucket(aws))
    fields = ready["fields"]
    assert fields["key"] == ready["key"]
    assert fields["Content-Type"] == content_type
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4: what buckets accept today
    # what S3 will enforce: the policy document that the signature covers
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"Content-Type": content_type} in policy["conditions"]
    assert ["content-length-range", 1, size] in policy["conditions"]
    assert {"key": ready["key"]} in policy["conditions"]
    assert {"bucket": bucket(aws)} in policy["conditions"]
    expires = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (time.time() + 900)) < 60
    assert keys_under(aws, "uploads/") == []  # a presigned POST creates nothing by itself


def test_each_request_gets_its_own_key(aws: LocalAws):
    first = answer(aws.invoke(FUNCTION, "request_upload/png.json"))[1]["key"]
    second = answer(aws.invoke(FUNCTION, "request_upload/png.json"))[1]["key"]
    assert first != second


def test_a_browser_like_post_lands_the_file_under_the_key(aws: LocalAws):
    _, ready = answer(aws.invoke(FUNCTION, "request_upload/png.json"))
    # as a page does it: the fields first, the file last, multipart/form-data
    posted = requests.post(ready["url"], data=ready["fields"], files={"file": ("me.png", PNG, "image/png")}, timeout=10)
    assert posted.status_code in (200, 201, 204), posted.text
    stored = aws.client("s3").get_object(Bucket=bucket(aws), Key=ready["key"])
    assert stored["Body"].read() == PNG
    assert stored["ContentType"] == "image/png"
