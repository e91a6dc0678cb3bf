"""Reading, resizing and writing images: every user-caused failure is a one-line ImageError."""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from styletransfer.images import MAX_INPUT_PIXELS, ImageError, fit_size, open_image, save_image, to_image, to_tensor


def noise_image(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """Random pixels: they compress badly, so half of the file is far from the whole image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_with_size(width: int, height: int) -> bytes:
    """A real tiny PNG whose IHDR claims `width` x `height`, with a valid CRC so Pillow trusts it."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buffer, "PNG")
    data = buffer.getvalue()
    assert data[12:16] == b"IHDR"  # 8-byte signature, 4-byte chunk length, then the chunk type
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]  # depth, colour, compression, filter, interlace
    return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def assert_one_line_naming(error: pytest.ExceptionInfo[ImageError], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert "\r" not in message
    assert str(path) in message
    return message


# --- open_image: what a user can get wrong ------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as error:
        open_image(path, "content image")
    message = assert_one_line_naming(error, path)
    assert "does not exist" in message
    assert message.startswith("content image ")


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "photos.png"
    path.mkdir()
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert "directory" in assert_one_line_naming(error, path)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_bytes(b"this is not a picture\n" * 20)
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert "not an image" in assert_one_line_naming(error, path)


def test_empty_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    noise_image().save(whole)
    open_image(whole)  # the intact file loads: the failure below is the truncation's
    data = whole.read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert "truncated" in assert_one_line_naming(error, path)


def test_truncated_stream_names_what_it_is() -> None:
    buffer = io.BytesIO()
    noise_image().save(buffer, "PNG")
    half = io.BytesIO(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"^style image is damaged or truncated") as error:
        open_image(half, "style image")
    assert "\n" not in str(error.value)


def test_patched_header_is_accepted_when_small(tmp_path: Path) -> None:
    """The bomb tests below rely on the patched IHDR being a valid header; at its real size it loads."""
    path = tmp_path / "tiny.png"
    path.write_bytes(png_with_size(4, 4))
    assert open_image(path).getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        (8000, "megapixels"),  # 64 MP: above our 50 MP limit, below Pillow's
        (10000, "too large"),  # 100 MP: Pillow only warns; the warning must become an error
        (20000, "too large"),  # 400 MP: Pillow's own DecompressionBombError
    ],
)
def test_decompression_bomb(tmp_path: Path, side: int, expected: str) -> None:
    assert side * side > MAX_INPUT_PIXELS
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(png_with_size(side, side))
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert expected in assert_one_line_naming(error, path)


def test_just_under_the_limit_is_not_refused_for_its_size(tmp_path: Path) -> None:
    """A header at 7000x7000 (49 MP) passes the size check; the data (4x4) then fails as truncated."""
    path = tmp_path / "big.png"
    path.write_bytes(png_with_size(7000, 7000))
    with pytest.raises(ImageError) as error:
        open_image(path)
    message = assert_one_line_naming(error, path)
    assert "megapixels" not in message
    assert "too large" not in message


# --- open_image: what comes back ----------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)

    loaded = open_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (20, 40)
    pixels = np.asarray(loaded).astype(float)
    top, bottom = pixels[:20].mean(axis=(0, 1)), pixels[20:].mean(axis=(0, 1))
    np.testing.assert_allclose(top, (255, 0, 0), atol=12)  # the left edge is now at the top
    np.testing.assert_allclose(bottom, (0, 0, 255), atol=12)


def test_rgba_comes_back_rgb_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black
    rgba[0, 1] = (10, 200, 30, 255)  # opaque
    rgba[0, 2] = (255, 0, 0, 128)  # half-transparent red
    path = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(path)

    loaded = open_image(path)
    assert loaded.mode == "RGB"
    pixels = np.asarray(loaded).astype(int)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[0, 1]) == (10, 200, 30)
    np.testing.assert_allclose(pixels[0, 2], (255, 127, 127), atol=1)


def test_greyscale_with_alpha_comes_back_on_white(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[0, 0], [50, 255]]], dtype=np.uint8), "LA").save(path)
    pixels = np.asarray(open_image(path))
    assert pixels.tolist() == [[[255, 255, 255], [50, 50, 50]]]


def test_16_bit_greyscale(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert image.mode == "I;16"
    path = tmp_path / "scan.png"
    image.save(path)

    loaded = open_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (3, 1)
    assert np.asarray(loaded).tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]


def test_palette_image(tmp_path: Path) -> None:
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 128, 0, 0, 0, 255])
    for x, index in enumerate((2, 0, 1)):
        image.putpixel((x, 0), index)
    path = tmp_path / "palette.png"
    image.save(path)

    loaded = open_image(path)
    assert loaded.mode == "RGB"
    assert np.asarray(loaded).tolist() == [[[0, 0, 255], [255, 0, 0], [0, 128, 0]]]


def test_palette_transparency_becomes_white(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 128, 0])
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    path = tmp_path / "gif-like.png"
    image.save(path, transparency=1)

    assert np.asarray(open_image(path)).tolist() == [[[255, 0, 0], [255, 255, 255]]]


# --- sizes and tensors --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20_000), st.integers(1, 20_000), st.integers(1, 4096))
def test_fit_size_keeps_aspect_and_makes_long_side_exact(width: int, height: int, long_side: int) -> None:
    new_width, new_height = fit_size(width, height, long_side)
    assert max(new_width, new_height) == long_side
    assert min(new_width, new_height) >= 1
    if width >= height:  # the long side stays the long side (ties allowed by rounding)
        assert new_width >= new_height
    if height >= width:
        assert new_height >= new_width
    scale = long_side / max(width, height)
    for new, old in ((new_width, width), (new_height, height)):
        exact = old * scale
        assert abs(new - exact) <= 0.5 + 1e-9 or (new == 1 and exact < 1)


def test_fit_size_examples() -> None:
    assert fit_size(96, 64, 64) == (64, 43)
    assert fit_size(64, 96, 64) == (43, 64)
    assert fit_size(100, 100, 256) == (256, 256)
    assert fit_size(4000, 10, 100) == (100, 1)  # never zero pixels


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3))))
def test_tensor_round_trip_is_exact(pixels: np.ndarray) -> None:
    image = Image.fromarray(pixels, "RGB")
    tensor = to_tensor(image)
    assert tensor.dtype == torch.float32
    assert tensor.shape == (1, 3, pixels.shape[0], pixels.shape[1])
    assert 0.0 <= float(tensor.min()) <= float(tensor.max()) <= 1.0
    back = to_image(tensor)
    assert back.mode == "RGB"
    assert np.array_equal(np.asarray(back), pixels)


def test_to_image_clamps_out_of_range_values() -> None:
    tensor = torch.tensor([-0.5, 0.5, 1.5]).view(1, 3, 1, 1)
    assert np.asarray(to_image(tensor)).tolist() == [[[0, 128, 255]]]


# --- save_image ---------------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_save_round_trip_png(tmp_path: Path) -> None:
    image = noise_image(20, 10)
    path = save_image(image, tmp_path / "out.png")
    assert path == tmp_path / "out.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        assert np.array_equal(np.asarray(saved), np.asarray(image))


@pytest.mark.parametrize(("name", "expected"), [("out.JPG", "JPEG"), ("out.webp", "WEBP"), ("out.tiff", "TIFF")])
def test_save_format_follows_the_extension(tmp_path: Path, name: str, expected: str) -> None:
    save_image(noise_image(20, 10), tmp_path / name)
    with Image.open(tmp_path / name) as saved:
        assert saved.format == expected


@pytest.mark.usefixtures("umask_022")
def test_saved_file_is_not_private(tmp_path: Path) -> None:
    path = save_image(noise_image(8, 8), tmp_path / "out.png")
    mode = path.stat().st_mode & 0o777
    assert mode != 0o600
    assert mode == 0o644  # 0o666 less the umask, as for any file the user creates


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    save_image(noise_image(8, 8), path)
    with Image.open(path) as saved:
        assert saved.size == (8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def _failing_save(exception: BaseException):
    """A stand-in for PIL's Image.save that writes part of a file, then fails."""

    def save(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"\x89PNG half of a file")  # something is on disk when the failure comes
        fp.flush()
        raise exception

    return save


@pytest.mark.parametrize("existing", [False, True])
def test_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    path = tmp_path / "out.png"
    if existing:
        path.write_bytes(b"the previous result")
    before = sorted(p.name for p in tmp_path.iterdir())
    save = _failing_save(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    monkeypatch.setattr(Image.Image, "save", save)

    with pytest.raises(ImageError) as error:
        save_image(noise_image(8, 8), path)
    message = assert_one_line_naming(error, path)
    assert os.strerror(errno.ENOSPC) in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no result, no temporary file
    if existing:
        assert path.read_bytes() == b"the previous result"


@pytest.mark.parametrize("exception", [KeyboardInterrupt(), ValueError("unsupported option")])
def test_interrupted_save_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exception: BaseException
) -> None:
    """Ctrl-C (or any other exception) while writing must not leave a hidden temporary file."""
    path = tmp_path / "out.png"
    path.write_bytes(b"the previous result")
    save = _failing_save(exception)
    monkeypatch.setattr(Image.Image, "save", save)

    with pytest.raises(type(exception)):
        save_image(noise_image(8, 8), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    assert path.read_bytes() == b"the previous result"


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "out.xyz"
    with pytest.raises(ImageError) as error:
        save_image(noise_image(8, 8), path)
    message = assert_one_line_naming(error, path)
    assert ".png" in message
    assert list(tmp_path.iterdir()) == []


def test_no_extension(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with pytest.raises(ImageError):
        save_image(noise_image(8, 8), path)
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.png"
    with pytest.raises(ImageError) as error:
        save_image(noise_image(8, 8), path)
    assert "does not exist" in assert_one_line_naming(error, path)
    assert list(tmp_path.iterdir()) == []


def test_destination_is_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.mkdir()
    with pytest.raises(ImageError) as error:
        save_image(noise_image(8, 8), path)
    assert "directory" in assert_one_line_naming(error, path)
    assert path.is_dir()
    assert list(path.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_dark_16_bit_greyscale_stays_dark(tmp_path):
    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((4, 4), 200, dtype=np.uint16)).save(path)  # 200 / 65535: nearly black
    assert np.asarray(open_image(path)).max() <= 1
