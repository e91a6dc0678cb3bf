"""PREVIEW_STYLES against moto and a local @connections server: a photo in every style of the
catalogue (or those named, or a blend of them) by the preview network, each pushed to the
requester alone as it is made, then STYLE_PREVIEWS_DONE; nothing stored, nothing broadcast; the
catalogue's style vectors made once; limited per connection and per address; every refusal an
ERROR before anything is painted."""

from __future__ import annotations

import base64
import copy
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image
from styleservice import preview

from ..local.stack_process import photo_png
from .connections_server import ConnectionsServer, connections_server  # noqa: F401 - a fixture
from .local_aws import ROOT, LocalAws, event
from .routes_support import CONNECTION_ID, UPLOAD_PNG, answer, bucket, event_files, keys_under, refusal, seed

FUNCTION = "PreviewStylesFunction"
CATALOGUE = ("starry-night", "the-scream")  # routes_support.seed's, in name order: no manifest

REFUSED = {
    "unknown_style": "unknown style 'no-such-style': LIST_STYLES gives the catalogue",
    "style_traversal": "styles.0 must be a style name from LIST_STYLES or a key from REQUEST_UPLOAD",
    "blend_without_styles": "styleBlend needs styles: the 2 or 3 styles of the blend, one weight each",
    "not_an_image": "the image is not a JPEG, PNG or WebP file",
    "too_small": "image: the photo is too small at this size (8x8): the preview needs 32 px a side",
    "missing_upload": "image: there is no upload at uploads/deadbeefdeadbeefdeadbeefdeadbeef.png",
    "strength_string": "strength: Input should be a valid number",
    "bad_request_id": "requestId: String should match pattern",
    "is_private": "unknown field isPrivate",  # previews are the requester's alone whatever the photo is
}
ANSWERED = ("catalogue", "one_style", "blend", "upload")


@pytest.fixture
def stack(aws: LocalAws, connections_server: ConnectionsServer) -> LocalAws:  # noqa: F811
    seed(aws)
    for name in CATALOGUE:  # the paintings themselves: a blend of two must differ from either
        painting = (ROOT / "catalogue" / f"{name}.jpg").read_bytes()
        aws.client("s3").put_object(Bucket=bucket(aws), Key=f"styles/{name}.jpg", Body=painting)
    aws.overrides["WEBSOCKET_ENDPOINT"] = connections_server.endpoint
    connections_server.connect(CONNECTION_ID, "stranger=")
    return aws


def pushed(server: ConnectionsServer, connection: str = CONNECTION_ID) -> list[dict[str, Any]]:
    return server.messages(connection)


def picture(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_every_event_file_has_an_expectation():
    assert {path.split("/")[1].removesuffix(".json") for path in event_files("preview_styles")} == {
        *REFUSED, *ANSWERED,
    }  # fmt: skip


def test_every_catalogue_style_is_pushed_as_it_is_made_then_done(stack: LocalAws, connections_server):  # noqa: F811
    done = answer(stack.invoke(FUNCTION, "preview_styles/catalogue.json"))
    assert done == ("STYLE_PREVIEWS_DONE", {"requestId": "photo-1", "count": 2, "skipped": []})
    previews = pushed(connections_server)
    assert [(p["event"], p["data"]["style"], p["data"]["requestId"]) for p in previews] == [
        ("STYLE_PREVIEW", name, "photo-1") for name in CATALOGUE
    ]
    for sent in previews:
        image = picture(sent["data"]["preview"])
        assert (image.format, image.size) == ("JPEG", (48, 32))  # the photo's shape; at most 256 px
        assert len(json.dumps(sent)) < 128 * 1024
    assert pushed(connections_server, "stranger=") == []  # never broadcast
    assert keys_under(stack, "public/") == keys_under(stack, "private/") == []


def test_a_style_is_painted_as_a_job_would_preview_it(stack: LocalAws, connections_server):  # noqa: F811
    """The strength and the colour switch reach the network as they do for a job's preview, and
    so does a blend: the same pixels as styleservice.preview.make_preview."""
    photo = base64.b64decode(json.loads(event("preview_styles/one_style.json")["body"])["image"].split(",", 1)[1])
    scream = stack.client("s3").get_object(Bucket=bucket(stack), Key="styles/the-scream.jpg")["Body"].read()
    night = stack.client("s3").get_object(Bucket=bucket(stack), Key="styles/starry-night.jpg")["Body"].read()

    assert answer(stack.invoke(FUNCTION, "preview_styles/one_style.json"))[1] == {"count": 1, "skipped": []}
    [sent] = pushed(connections_server)
    assert sent["data"]["style"] == "the-scream"
    expected = preview.make_preview(photo, scream, size=256, strength=0.2, preserve_colors=True)
    assert close(picture(sent["data"]["preview"]), expected)

    assert answer(stack.invoke(FUNCTION, "preview_styles/blend.json"))[1] == {"count": 1, "skipped": []}
    blend = pushed(connections_server)[-1]["data"]
    assert blend["style"] == ["starry-night", "the-scream"]  # one picture, named by its styles
    expected = preview.make_preview(photo, [night, scream], size=256, blend=[0.7, 0.3])
    assert close(picture(blend["preview"]), expected)
    assert not close(picture(blend["preview"]), preview.make_preview(photo, night, size=256))


def close(sent: Image.Image, exact: Image.Image) -> bool:
    """The same picture, encoded as the function encodes it: the same JPEG, pixel for pixel."""
    encoded = Image.open(io.BytesIO(preview.jpeg(exact, 80)))
    return np.array_equal(np.asarray(sent), np.asarray(encoded))


def test_an_uploaded_photo_and_style_are_read_as_transfer_style_reads_them(stack: LocalAws, connections_server):  # noqa: F811
    # the event's upload, a photo large enough for the network (the shared seed's is 8x8)
    stack.client("s3").put_object(Bucket=bucket(stack), Key=UPLOAD_PNG, Body=photo_png(600, 400))
    assert answer(stack.invoke(FUNCTION, "preview_styles/upload.json")) == (
        "STYLE_PREVIEWS_DONE",
        {"count": 1, "skipped": []},
    )
    [sent] = pushed(connections_server)
    assert sent["data"]["style"] == "uploads/c0ffee00c0ffee00c0ffee00c0ffee00.jpg"  # named as it was asked for
    assert picture(sent["data"]["preview"]).size == (256, 171)  # at most 256 px
    assert keys_under(stack, "public/") == keys_under(stack, "private/") == []


def test_the_catalogues_vectors_are_made_once_not_per_request(stack: LocalAws, connections_server, monkeypatch):  # noqa: F811
    stack.invoke(FUNCTION, "preview_styles/catalogue.json")  # the function's module exists from here
    module = stack._modules[FUNCTION]
    made: list[int] = []
    real = preview.style_vector
    monkeypatch.setattr(preview, "style_vector", lambda *args, **kw: made.append(1) or real(*args, **kw))
    for _ in range(3):
        assert answer(stack.invoke(FUNCTION, "preview_styles/catalogue.json"))[1]["count"] == 2
    assert made == []
    assert len(module.vectors) == len(CATALOGUE)
    # a picture replaced in the catalogue is a new version: its vector is made again, once
    painting = (ROOT / "catalogue" / "the-great-wave.jpg").read_bytes()
    stack.client("s3").put_object(Bucket=bucket(stack), Key="styles/the-scream.jpg", Body=painting)
    stack.invoke(FUNCTION, "preview_styles/catalogue.json")
    stack.invoke(FUNCTION, "preview_styles/catalogue.json")
    assert made == [1]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_clear_message_and_nothing_painted(stack: LocalAws, connections_server, name: str):  # noqa: F811
    assert REFUSED[name] in refusal(stack.invoke(FUNCTION, f"preview_styles/{name}.json"))
    assert pushed(connections_server) == []


def preview_from(aws: LocalAws, connection: str, source_ip: str = "192.0.2.10") -> dict:
    request = copy.deepcopy(event("preview_styles/one_style.json"))
    request["requestContext"]["connectionId"] = connection
    request["requestContext"]["identity"]["sourceIp"] = source_ip
    return aws.invoke(FUNCTION, request)


def test_previews_are_limited_per_connection_and_per_address(stack: LocalAws, connections_server):  # noqa: F811
    stack.overrides["PREVIEWS_PER_CONNECTION"] = "2"
    stack.overrides["PREVIEWS_PER_SOURCE_IP"] = "3"
    connections_server.connect("a=", "b=", "c=")
    assert [answer(preview_from(stack, "a="))[0] for _ in range(2)] == ["STYLE_PREVIEWS_DONE"] * 2
    assert refusal(preview_from(stack, "a=")).startswith(
        "too many previews from this connection: at most 2 every 10 min; please try again in"
    )
    assert answer(preview_from(stack, "b="))[0] == "STYLE_PREVIEWS_DONE"
    assert refusal(preview_from(stack, "c=")).startswith(
        "too many previews from your network address: at most 3 every 60 min"
    )
    assert answer(preview_from(stack, "c=", "198.51.100.7"))[0] == "STYLE_PREVIEWS_DONE"
    assert len(connections_server.messages("a=")) == 2  # a refused request paints nothing
    # counted apart from TRANSFER_STYLE: previews spend none of a connection's style transfers
    counters = stack.client("dynamodb").scan(TableName=stack.refs["RateLimitsTable"])["Items"]
    assert counters
    assert all(item["id"]["S"].startswith("previews#") for item in counters)


def test_a_requester_that_left_gets_nothing_more_painted(stack: LocalAws, connections_server):  # noqa: F811
    connections_server.close(CONNECTION_ID)
    assert answer(stack.invoke(FUNCTION, "preview_styles/catalogue.json"))[1]["count"] == 0
