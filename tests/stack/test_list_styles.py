"""LIST_STYLES against moto, from the event files under events/list_styles/."""

from __future__ import annotations

import pytest

from .local_aws import LocalAws
from .routes_support import answer, bucket, refusal, seed


def test_the_catalogue_is_every_styles_jpg_sorted_with_its_public_url(aws: LocalAws):
    seed(aws)  # starry-night, the-scream, and a README.txt and a draft.png that are not styles
    aws.client("s3").put_object(Bucket=bucket(aws), Key="styles/a-first.jpg", Body=b"...")
    aws.client("s3").put_object(Bucket=bucket(aws), Key="public/output/abc.jpg", Body=b"...")  # not under styles/
    event_name, data = answer(aws.invoke("ListStylesFunction", "list_styles/list.json"))
    assert event_name == "STYLES"
    assert data == {
        "styles": [
            {"name": "a-first", "previewUrl": "https://cdn.local.test/styles/a-first.jpg"},
            {"name": "starry-night", "previewUrl": "https://cdn.local.test/styles/starry-night.jpg"},
            {"name": "the-scream", "previewUrl": "https://cdn.local.test/styles/the-scream.jpg"},
        ]
    }


def test_an_empty_catalogue_is_an_empty_list(aws: LocalAws):
    assert answer(aws.invoke("ListStylesFunction", "list_styles/list.json")) == ("STYLES", {"styles": []})


@pytest.mark.parametrize(
    ("name", "text"), [("unknown_field", "unknown field prefix"), ("bad_json", "the message is not valid JSON")]
)
def test_refused_with_a_clear_message(aws: LocalAws, name: str, text: str):
    assert refusal(aws.invoke("ListStylesFunction", f"list_styles/{name}.json")) == text
