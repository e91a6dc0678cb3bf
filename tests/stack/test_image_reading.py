"""One reading of users' images (safeimage) for the worker, TRANSFER_STYLE's check and the instant
preview: an image is refused by all three or by none, in the same words, and the preview sees the
photo the worker paints."""

from __future__ import annotations

import io

import numpy as np
import pytest
import safeimage
from PIL import Image
from styleservice import preview
from styleservice.image_check import check_image
from styleservice.protocol import ProtocolError
from styletransfer.images import ImageError, open_image

from .routes_support import png_claiming


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def photo(image_format: str = "PNG") -> bytes:
    rng = np.random.default_rng(7)
    return encoded(Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)), image_format)


REFUSED = {
    "not an image": lambda: b"hello, world\n" * 20,
    "empty": lambda: b"",
    "truncated PNG": lambda: photo("PNG")[:300],
    "truncated JPEG": lambda: photo("JPEG")[: len(photo("JPEG")) // 2],
    "PNG body of noise": lambda: photo("PNG")[:33] + bytes(range(256)) * 4,
    "WebP header only": lambda: photo("WEBP")[:16],
    "60 megapixels": lambda: png_claiming(10_000, 6_000),
    "a bomb": lambda: png_claiming(20_000, 20_000),
    "no width": lambda: png_claiming(0, 100),
}


def refusals(data: bytes) -> tuple[str, str, str]:
    """What the worker's engine, TRANSFER_STYLE's check and the preview say of `data`, each as the
    user reads it (the worker's job prefixes "the ", as TRANSFER_STYLE's and the preview's labels do)."""
    with pytest.raises(ImageError) as engine:
        open_image(io.BytesIO(data), "content image")
    with pytest.raises(ProtocolError) as check:
        check_image(data, "content image")
    with pytest.raises(preview.PreviewError) as previewed:
        preview.decoded(data, "content image", preview.MAX_SIDE)
    return f"the {engine.value}", str(check.value), str(previewed.value)


def reason(message: str) -> str:
    """A refusal without Pillow's detail in brackets (a decoder at another scale stops elsewhere)."""
    return message.split(" (", 1)[0]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_image_is_refused_by_all_three_in_the_same_words(case: str):
    said = refusals(REFUSED[case]())
    assert said[0].startswith("the content image ")
    assert len({reason(message) for message in said}) == 1, said


def test_all_three_have_one_pixel_limit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(safeimage, "MAX_INPUT_PIXELS", 1_000_000)
    at_the_limit = encoded(Image.new("RGB", (1000, 1000), (90, 120, 200)), "PNG")
    assert open_image(io.BytesIO(at_the_limit)).size == (1000, 1000)
    check_image(at_the_limit, "content image")  # no refusal
    assert preview.decoded(at_the_limit, "photo", preview.MAX_SIDE).size == (1000, 1000)

    said = refusals(png_claiming(1001, 1000))
    assert set(said) == {"the content image is 1001x1000 pixels, more than the 1 megapixels accepted"}


def test_the_preview_reads_the_photo_as_the_worker_does():
    """Transparency on white and the EXIF orientation, as the engine paints it (the preview used to
    drop the alpha channel, painting transparent parts as whatever colour lay under them)."""
    image = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (20, 0, 40, 20))  # the right half transparent black
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encoded(image, "PNG", exif=exif)

    seen = preview.decoded(data, "photo", preview.MAX_SIDE)
    painted = open_image(io.BytesIO(data))
    assert seen.mode == painted.mode == "RGB"
    assert seen.size == painted.size == (20, 40)
    assert np.array_equal(np.asarray(seen), np.asarray(painted))
    assert np.asarray(seen)[-1, 0].tolist() == [255, 255, 255]  # transparent: white, not black


def test_a_jpeg_is_checked_at_an_eighth_of_its_size_and_previewed_at_what_the_preview_needs(
    monkeypatch: pytest.MonkeyPatch,
):
    data = encoded(Image.new("RGB", (1600, 800), (30, 60, 90)), "JPEG")
    assert preview.decoded(data, "photo", 400).size == (400, 200)  # 1/4 keeps 400 px; 1/8 would not
    assert open_image(io.BytesIO(data)).size == (1600, 800)
    decoded_sizes: list[tuple[int, int]] = []
    decode = safeimage._decoded

    def spied(*args: object, **kwargs: object) -> Image.Image:
        image = decode(*args, **kwargs)  # type: ignore[arg-type]
        decoded_sizes.append(image.size)
        return image

    monkeypatch.setattr(safeimage, "_decoded", spied)
    check_image(data, "content image")
    assert decoded_sizes == [(200, 100)]
