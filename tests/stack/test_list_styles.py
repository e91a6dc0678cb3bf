"""LIST_STYLES against moto, from the event files under events/list_styles/."""

from __future__ import annotations

import json

import pytest

from .local_aws import LocalAws
from .routes_support import answer, bucket, refusal, seed

CDN = "https://cdn.local.test"
UNKNOWN = {"artist": None, "year": None}  # a picture that the manifest does not describe


def test_the_catalogue_is_every_styles_jpg_sorted_with_its_public_url_titled_after_its_name(aws: LocalAws):
    seed(aws)  # starry-night, the-scream, and a README.txt and a draft.png that are not styles
    aws.client("s3").put_object(Bucket=bucket(aws), Key="styles/a-first.jpg", Body=b"...")
    aws.client("s3").put_object(Bucket=bucket(aws), Key="public/output/abc.jpg", Body=b"...")  # not under styles/
    event_name, data = answer(aws.invoke("ListStylesFunction", "list_styles/list.json"))
    assert event_name == "STYLES"
    assert data == {
        "styles": [
            {"name": "a-first", "previewUrl": f"{CDN}/styles/a-first.jpg", "title": "A First", **UNKNOWN},
            {
                "name": "starry-night",
                "previewUrl": f"{CDN}/styles/starry-night.jpg",
                "title": "Starry Night",
                **UNKNOWN,
            },
            {"name": "the-scream", "previewUrl": f"{CDN}/styles/the-scream.jpg", "title": "The Scream", **UNKNOWN},
        ]
    }


def test_the_manifest_gives_title_artist_and_year_and_its_order(aws: LocalAws):
    seed(aws)
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket(aws), Key="styles/a-first.jpg", Body=b"...")
    manifest = {
        "styles": [
            {"name": "the-scream", "title": "The Scream", "artist": "Edvard Munch", "year": "1893"},
            {"name": "starry-night", "title": "The Starry Night", "artist": "Vincent van Gogh", "year": "1889"},
            {"name": "not-uploaded", "title": "Listed, but there is no picture", "artist": "Nobody", "year": "1900"},
        ]
    }
    s3.put_object(Bucket=bucket(aws), Key="styles/catalogue.json", Body=json.dumps(manifest).encode())
    _, data = answer(aws.invoke("ListStylesFunction", "list_styles/list.json"))
    assert data["styles"] == [
        {"name": "the-scream", "previewUrl": f"{CDN}/styles/the-scream.jpg", "title": "The Scream",
         "artist": "Edvard Munch", "year": "1893"},
        {"name": "starry-night", "previewUrl": f"{CDN}/styles/starry-night.jpg", "title": "The Starry Night",
         "artist": "Vincent van Gogh", "year": "1889"},
        {"name": "a-first", "previewUrl": f"{CDN}/styles/a-first.jpg", "title": "A First", **UNKNOWN},
    ]  # fmt: skip


def test_a_broken_manifest_still_lists_the_pictures(aws: LocalAws):
    seed(aws)
    aws.client("s3").put_object(Bucket=bucket(aws), Key="styles/catalogue.json", Body=b"{not json")
    _, data = answer(aws.invoke("ListStylesFunction", "list_styles/list.json"))
    assert [(style["name"], style["title"], style["artist"]) for style in data["styles"]] == [
        ("starry-night", "Starry Night", None),
        ("the-scream", "The Scream", None),
    ]


def test_an_empty_catalogue_is_an_empty_list(aws: LocalAws):
    assert answer(aws.invoke("ListStylesFunction", "list_styles/list.json")) == ("STYLES", {"styles": []})


@pytest.mark.parametrize(
    ("name", "text"), [("unknown_field", "unknown field prefix"), ("bad_json", "the message is not valid JSON")]
)
def test_refused_with_a_clear_message(aws: LocalAws, name: str, text: str):
    assert refusal(aws.invoke("ListStylesFunction", f"list_styles/{name}.json")) == text
