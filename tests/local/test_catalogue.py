"""The style catalogue: the public-domain paintings shipped in catalogue/ (each listed with its
title, artist and year, and its right to be here), and the local stack's seeding of them and of
the project's drawn styles as styles/<name>.jpg, never overwriting."""

from __future__ import annotations

import datetime
import io
import json
import re

import numpy as np
from PIL import Image
from stylejob import keys
from stylelocal.catalogue import CATALOGUE, SIZE, STYLES, paintings, seed_styles
from styletransfer import samples

PUBLIC_DOMAIN_YEARS = 70  # life + 70 (the EU, and most of the world)
PUBLISHED_BEFORE = 1930  # the United States: works published before 1930 are in the public domain


def catalogue(aws) -> dict[str, bytes]:
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="styles/").get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_every_painting_is_listed_with_its_file_and_is_in_the_public_domain():
    entries = paintings()
    files = {path.name for path in CATALOGUE.glob("*.jpg")}
    assert sorted(entry["file"] for entry in entries) == sorted(files)
    sources = (CATALOGUE / "SOURCES.md").read_text()
    for entry in entries:
        assert keys.STYLE_NAME.match(entry["name"]), entry
        assert entry["file"] == f"{entry['name']}.jpg"  # uploaded as styles/<file>, found as styles/<name>.jpg
        assert entry["title"]
        assert entry["artist"]
        assert datetime.date.today().year - entry["artistDied"] > PUBLIC_DOMAIN_YEARS, entry
        assert int(re.search(r"\d{4}", entry["year"]).group()) < PUBLISHED_BEFORE, entry
        assert f"| {entry['file']} |" in sources, f"{entry['file']}: no source in catalogue/SOURCES.md"
        image = Image.open(CATALOGUE / entry["file"])
        assert (image.format, image.mode) == ("JPEG", "RGB")
        assert 512 <= max(image.size) <= 2048  # detailed enough for a 512 px result, not a huge download
        assert (CATALOGUE / entry["file"]).stat().st_size < 512 * 1024


def test_seeding_writes_the_paintings_then_the_drawn_styles_and_the_manifest(aws):
    written = seed_styles(aws)

    painted = [entry["name"] for entry in paintings()]
    assert written == painted + list(STYLES)
    stored = catalogue(aws)
    assert sorted(keys.style_name(key) for key in stored if key.endswith(".jpg")) == sorted(written)
    assert json.loads(stored[keys.CATALOGUE_KEY])["styles"] == paintings()
    for entry in paintings():
        assert stored[f"styles/{entry['name']}.jpg"] == (CATALOGUE / entry["file"]).read_bytes()
    for name in STYLES:
        image = Image.open(io.BytesIO(stored[f"styles/{name}.jpg"]))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (SIZE, SIZE)), name
    head = aws.client("s3").head_object(Bucket=aws.refs["ImagesBucket"], Key="styles/starry-night.jpg")
    assert head["ContentType"] == "image/jpeg"


def test_seeding_again_writes_nothing_and_keeps_a_style_that_is_already_there(aws):
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    mine = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(mine, format="JPEG")
    s3.put_object(Bucket=bucket, Key="styles/swirls.jpg", Body=mine.getvalue(), ContentType="image/jpeg")

    assert "swirls" not in seed_styles(aws)  # e.g. restored from a snapshot: it wins
    assert catalogue(aws)["styles/swirls.jpg"] == mine.getvalue()
    assert seed_styles(aws) == []


def test_the_new_sample_styles_are_deterministic_bold_pictures():
    for paint in (samples.mosaic, samples.waves):
        image = paint(128)
        assert (image.mode, image.size) == ("RGB", (128, 128))
        assert np.array_equal(np.asarray(paint(128)), np.asarray(image))  # same seed, same picture
        assert not np.array_equal(np.asarray(paint(128, seed=1)), np.asarray(image))
        assert np.asarray(image).std() > 30  # strong contrast: something for the style loss to copy
