"""The local style catalogue: the project's own styles as styles/<name>.jpg, never overwriting."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from stylelocal.catalogue import SIZE, STYLES, seed_styles
from styleservice import keys
from styletransfer import samples


def catalogue(aws) -> dict[str, bytes]:
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="styles/").get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_seeding_writes_each_style_as_an_rgb_jpeg_that_list_styles_finds(aws):
    written = seed_styles(aws)

    assert sorted(written) == sorted(STYLES) == ["mosaic", "stained-glass", "swirls", "waves"]
    stored = catalogue(aws)
    assert sorted(keys.style_name(key) for key in stored) == sorted(written)  # LIST_STYLES' own filter
    for key, data in stored.items():
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (SIZE, SIZE)), key
        head = aws.client("s3").head_object(Bucket=aws.refs["ImagesBucket"], Key=key)
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
