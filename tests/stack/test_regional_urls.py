"""Presigned URLs name the bucket's regional endpoint in every region: the global endpoint
(<bucket>.s3.amazonaws.com) is refused by regions launched after March 2019 and redirects for new
buckets elsewhere. No request is made: signing is local."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from styleservice import storage

BUCKET = "imagesbucket-1a2b3c"
# the oldest region (whose botocore default is the global endpoint), an older one, two opt-in
# regions launched after March 2019, and a region of another partition
REGIONS = {
    "us-east-1": "amazonaws.com",
    "eu-west-1": "amazonaws.com",
    "ap-east-1": "amazonaws.com",
    "eu-central-2": "amazonaws.com",
    "cn-north-1": "amazonaws.com.cn",
}


@pytest.fixture(params=sorted(REGIONS))
def region(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Lambda environment in that region, with no endpoint override (that is moto's, in tests)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", request.param)
    monkeypatch.setenv("AWS_DEFAULT_REGION", request.param)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    return request.param


def test_presigned_get_uses_the_regional_endpoint(region: str):
    url = urlsplit(storage.presigned_get(storage.s3_client(), "private/output/ab.jpg"))
    assert url.scheme == "https"
    assert url.hostname == f"{BUCKET}.s3.{region}.{REGIONS[region]}"
    assert url.path == "/private/output/ab.jpg"
    assert f"%2F{region}%2Fs3%2Faws4_request" in url.query  # signed for the bucket's region


def test_presigned_post_uses_the_regional_endpoint(region: str):
    post = storage.s3_client().generate_presigned_post(BUCKET, "uploads/ab.png", ExpiresIn=60)
    assert urlsplit(post["url"]).hostname == f"{BUCKET}.s3.{region}.{REGIONS[region]}"
    assert f"/{region}/s3/aws4_request" in post["fields"]["x-amz-credential"]


def test_an_endpoint_override_still_wins(monkeypatch: pytest.MonkeyPatch, region: str):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    url = urlsplit(storage.presigned_get(storage.s3_client(), "k.jpg"))
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5000, f"/{BUCKET}/k.jpg")
