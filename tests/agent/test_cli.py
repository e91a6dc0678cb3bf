"""The `stylize` command: every mistake ends in one line on stderr and a non-zero exit status."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from styletransfer.cli import main

STYLIZE = Path(sys.executable).parent / "stylize"


def check_one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("stylize: error:")
    return lines[0]


def input_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run main() for a problem found after parsing (a bad file, a bad combination): status 2."""
    assert main(argv) == 2
    return check_one_error_line(capsys)


def argument_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run main() for a problem argparse finds: it exits with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return check_one_error_line(capsys)


def nothing_written(directory: Path, *inputs: Path) -> None:
    """Only the inputs are there: no result and no temporary file."""
    assert sorted(p.name for p in directory.iterdir()) == sorted({p.name for p in inputs})


def bomb_png(side: int) -> bytes:
    """A real 4x4 PNG whose header claims side x side pixels (with a valid CRC)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = buffer.getvalue()
    body = b"IHDR" + struct.pack(">II", side, side) + data[24:29]
    return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


# --- bad input files ----------------------------------------------------------------------------


def test_missing_content(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    _, style = image_files
    missing, out = tmp_path / "missing.png", tmp_path / "out.png"
    line = input_error(capsys, [str(missing), str(style), "-o", str(out), "--size", "64"])
    assert str(missing) in line
    assert "does not exist" in line
    nothing_written(tmp_path, *image_files)


def test_style_that_is_not_an_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    content, _ = image_files
    style = tmp_path / "style.jpg"
    style.write_bytes(b"just some text, not a painting\n" * 10)
    out = tmp_path / "out.png"
    line = input_error(capsys, [str(content), str(style), "-o", str(out), "--size", "64"])
    assert line.startswith(f"stylize: error: style image {style}")
    assert "not an image" in line
    nothing_written(tmp_path, *image_files)


def test_truncated_content(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    _, style = image_files
    rng = np.random.default_rng(0)
    whole = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(whole, "PNG")
    content = tmp_path / "content.png"
    content.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    out = tmp_path / "out.png"
    line = input_error(capsys, [str(content), str(style), "-o", str(out), "--size", "64"])
    assert str(content) in line
    assert "truncated" in line
    nothing_written(tmp_path, *image_files)


@pytest.mark.parametrize("side", [8000, 20000])
def test_decompression_bomb(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path], side: int
) -> None:
    content, _ = image_files
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(side))
    out = tmp_path / "out.png"
    line = input_error(capsys, [str(content), str(bomb), "-o", str(out), "--size", "64"])
    assert str(bomb) in line
    nothing_written(tmp_path, *image_files, bomb)


def test_file_name_with_a_newline_stays_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    _, style = image_files
    missing = tmp_path / "holiday\nphoto.png"
    out = tmp_path / "out.png"
    line = input_error(capsys, [str(missing), str(style), "-o", str(out), "--size", "64"])
    assert "holiday\\nphoto.png" in line
    nothing_written(tmp_path, *image_files)


# --- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--size", "0", "--size"),
        ("--size", "-5", "--size"),
        ("--size", "100000", "outside 64..4096"),
        ("--size", "abc", "not a whole number"),
        ("--size", "64.5", "not a whole number"),
        ("--size", "5000\n", "outside 64..4096"),  # int() accepts the newline; the message must not
        ("--strength", "nan", "--strength"),
        ("--strength", "inf", "--strength"),
        ("--strength", "2", "outside 0..1"),
        ("--iterations", "0", "--iterations"),
        ("--scales", "9", "--scales"),
        ("--preset", "ultra", "invalid choice"),
    ],
)
def test_bad_option_value(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    image_files: tuple[Path, Path],
    option: str,
    value: str,
    expected: str,
) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    line = argument_error(capsys, [str(content), str(style), "-o", str(out), f"{option}={value}"])
    assert expected in line
    nothing_written(tmp_path, *image_files)


def test_negative_size_as_a_separate_word(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    content, style = image_files
    line = argument_error(capsys, [str(content), str(style), "-o", str(tmp_path / "out.png"), "--size", "-5"])
    assert "--size" in line
    assert "-5" in line
    nothing_written(tmp_path, *image_files)


def test_missing_output_option(capsys: pytest.CaptureFixture[str], image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    line = argument_error(capsys, [str(content), str(style)])
    assert "-o/--output" in line


def test_missing_style(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, _ = image_files
    argument_error(capsys, [str(content), "-o", str(tmp_path / "out.png")])
    nothing_written(tmp_path, *image_files)


def test_unknown_option(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    line = argument_error(capsys, [str(content), str(style), "-o", str(tmp_path / "out.png"), "--colour"])
    assert "--colour" in line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out.xyz", ".png"),
        ("missing/out.png", "does not exist"),
        ("out", ".png"),
    ],
)
def test_unwritable_output_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path], name: str, expected: str
) -> None:
    content, style = image_files
    out = tmp_path / name
    line = input_error(capsys, [str(content), str(style), "-o", str(out), "--size", "64", "--iterations", "1"])
    assert str(out) in line
    assert expected in line
    nothing_written(tmp_path, *image_files)


def test_output_that_is_a_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    out.mkdir()
    line = input_error(capsys, [str(content), str(style), "-o", str(out), "--size", "64"])
    assert "directory" in line
    assert list(out.iterdir()) == []


def test_too_many_styles(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    line = input_error(capsys, [str(content), *[str(style)] * 9, "-o", str(out), "--size", "64"])
    assert "at most 8 style images, not 9" in line
    nothing_written(tmp_path, *image_files)


@pytest.mark.parametrize("weights", [["1"], ["1", "2", "3"]])
def test_style_blend_with_the_wrong_count(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path], weights: list[str]
) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    argv = [str(content), str(style), str(style), "-o", str(out), "--size", "64", "--style-blend", *weights]
    line = input_error(capsys, argv)
    assert f"{len(weights)} weights for 2 style images" in line
    nothing_written(tmp_path, *image_files)


def test_style_blend_all_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    argv = [str(content), str(style), str(style), "-o", str(out), "--size", "64", "--style-blend", "0", "0"]
    line = input_error(capsys, argv)
    assert "blend" in line
    nothing_written(tmp_path, *image_files)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_device_without_a_gpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    argv = [str(content), str(style), "-o", str(out), "--size", "64", "--iterations", "1", "--device", "cuda"]
    line = input_error(capsys, argv)
    assert "no CUDA GPU" in line
    nothing_written(tmp_path, *image_files)


def test_cuda_graph_on_the_cpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    argv = [str(content), str(style), "-o", str(out), "--size", "64", "--device", "cpu", "--capture", "cuda_graph"]
    line = input_error(capsys, argv)
    assert "capture 'cuda_graph' needs a CUDA device" in line
    nothing_written(tmp_path, *image_files)


def test_unknown_device(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    argv = [str(content), str(style), "-o", str(out), "--size", "64", "--iterations", "1", "--device", "tpu"]
    line = input_error(capsys, argv)
    assert "tpu" in line
    nothing_written(tmp_path, *image_files)


# --- the real console script --------------------------------------------------------------------


def run_stylize(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "STYLIZE_DEBUG"}
    return subprocess.run(
        [str(STYLIZE), *map(str, args)], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_console_script_is_installed() -> None:
    assert STYLIZE.is_file()
    assert os.access(STYLIZE, os.X_OK)


def test_console_script_error(tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    _, style = image_files
    missing, out = tmp_path / "missing.jpg", tmp_path / "out.png"
    result = run_stylize(missing, style, "-o", out, "--size", "64")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stylize: error:")
    assert str(missing) in lines[0]
    nothing_written(tmp_path, *image_files)


def test_console_script_argument_error(tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    result = run_stylize(content, style, "-o", tmp_path / "out.png", "--size", "abc")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("stylize: error:")
    nothing_written(tmp_path, *image_files)


def test_console_script_end_to_end(tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    out = tmp_path / "out.png"
    result = run_stylize(content, style, "-o", out, "--size", "64", "--iterations", "3", "--scales", "1")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "it" in result.stderr
    assert "3/3" in result.stderr  # tqdm's progress bar reached the end
    assert f"wrote {out}" in result.stderr
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == (64, 43)  # the content is 96x64: long side 64, same aspect ratio
    nothing_written(tmp_path, *image_files, out)  # no temporary file is left over


def test_console_script_quiet(tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    content, style = image_files
    out = tmp_path / "out.jpg"
    result = run_stylize(content, style, "-o", out, "--size", "64", "--iterations", "2", "--scales", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    with Image.open(out) as image:
        assert image.format == "JPEG"
        assert image.size == (64, 43)


def test_too_thin_an_image(capsys: pytest.CaptureFixture[str], tmp_path: Path, image_files: tuple[Path, Path]) -> None:
    _, style = image_files
    thin, out = tmp_path / "thin.png", tmp_path / "out.png"
    Image.new("RGB", (2000, 8)).save(thin)
    line = input_error(capsys, [str(thin), str(style), "-o", str(out), "--size", "128", "--iterations", "1"])
    assert "content image is 2000x8: too thin" in line
    assert not out.exists()
