"""agent/benchmarks/noise_start.py and the reference pieces it stands on: the reference started from
a given image, and the score's roughness term."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from styletransfer.images import resized, to_tensor
from styletransfer.reference import Scorer, reference_stylize
from styletransfer.vgg import to_caffe

from .conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "agent" / "benchmarks" / "noise_start.py"
noise_start = load_benchmark("noise_start")


def test_neural_styles_noise_is_a_trace_around_the_mean_pixel():
    noise = noise_start.neural_style_noise(torch.Size((1, 3, 200, 300)), seed=3)
    assert abs(float(noise.mean())) < 1e-5  # caffe space: zero is the mean pixel
    assert float(noise.std()) == pytest.approx(0.001, rel=0.01)
    assert torch.equal(noise, noise_start.neural_style_noise(torch.Size((1, 3, 200, 300)), seed=3))


def test_the_reference_starts_where_it_is_told(content, style):
    """With no iterations to speak of, the reference's result stays at its start: the content
    image by default, or the start given."""
    content_caffe, style_caffe = to_caffe(to_tensor(resized(content, 64))), to_caffe(to_tensor(resized(style, 64)))
    start = noise_start.neural_style_noise(content_caffe.shape, seed=0)
    from_start, _ = reference_stylize(content_caffe, style_caffe, 1, start=start)
    from_content, _ = reference_stylize(content_caffe, style_caffe, 1)
    assert float((from_start - start).abs().mean()) < float((from_content - start).abs().mean()) / 10


def test_roughness_is_the_scores_total_variation_term(content, style):
    scorer = Scorer(content, style, 64)
    width, height = resized(content, 64).size
    flat = Image.new("RGB", (width, height), (120, 110, 100))
    columns = np.where(np.arange(width) % 2, 255, 0).astype(np.uint8)
    stripes = Image.fromarray(np.broadcast_to(columns[None, :, None], (height, width, 3)).copy())
    assert scorer.roughness(flat) == 0
    # 255-unit steps between every two columns, in all three channels: tv_weight · Σ dx² / 2
    assert scorer.roughness(stripes) == pytest.approx(1e-3 * 3 * height * (width - 1) * 255**2 / 2, rel=1e-6)
    only_smoothness = Scorer(content, style, 64, weights=(0.0, 0.0, 1e-3))
    assert only_smoothness.score(stripes) == pytest.approx(scorer.roughness(stripes), rel=1e-6)


def test_the_comparison_prints_each_start_scored():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--size", "64", "--iterations", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header = r"^# .*chelsea x starry-night, 64x43, 1 scale x 2 iterations from noise; the engine's plan: cpu"
    assert re.search(header, done.stdout, re.M), done.stdout
    number = r"\d+(?:\.\d+)?(?:e[+-]\d+)?"
    for label in (
        "reference, neural-style's noise start, history 100",
        "engine, its noise start, history 20",
        "engine, its noise start, history 100",
        "engine, uniform noise over 0..255, history 20",
        "engine, uniform noise over 0..255, history 100",
    ):
        assert re.search(rf"^{re.escape(label)}\s+{number}\s+{number}\s+{number}$", done.stdout, re.M), done.stdout
