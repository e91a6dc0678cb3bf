"""The worker's part in watching it paint and in sensible defaults: thumbnails in some progress
messages (late enough, rarely enough, small enough), and the preset that suits the device."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
import torch
from PIL import Image
from styletransfer import Progress
from styletransfer.options import PRESETS
from stylize_worker.job import THUMBNAIL_MAX_BYTES, THUMBNAIL_SIDE, ProgressReporter, engine_options

JOB_ID = "0123456789abcdef0123456789abcdef"
PAINTING = Image.effect_noise((640, 400), 80).convert("RGB")  # noise: the hardest picture to compress


def step(n: int, snapshot: Any = None, total: int = 100) -> Progress:
    return Progress(iteration=n, total=total, loss=1.0, scale=1, scales=1, size=(640, 400), snapshot=snapshot)


def test_a_job_without_options_or_with_auto_gets_the_preset_for_its_device(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engine_options({}) == PRESETS["preview"]  # on a CPU
    assert engine_options({"preset": "auto", "size": None}) == PRESETS["preview"]
    assert engine_options({"preset": "auto", "size": 64}) == PRESETS["preview"].replace(size=64)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engine_options({}) == PRESETS["standard"]  # on a GPU
    assert engine_options({"preset": "auto"}) == PRESETS["standard"]
    assert engine_options({"preset": "preview"}) == PRESETS["preview"]  # a named preset is kept


def test_thumbnails_come_only_after_a_while_then_at_most_every_interval():
    snapshots = 0

    def snapshot() -> Image.Image:
        nonlocal snapshots
        snapshots += 1
        return PAINTING

    sent: list[dict[str, Any]] = []
    short = ProgressReporter(JOB_ID, sent.append, interval=0, thumbnail_after=60)
    for n in range(1, 100):
        short(step(n, snapshot))
    assert len(sent) == 99
    assert not any("thumbnail" in m for m in sent)
    assert snapshots == 0  # and no image made for nothing

    sent.clear()
    rare = ProgressReporter(JOB_ID, sent.append, interval=0, thumbnail_after=0, thumbnail_interval=60)
    for n in range(1, 100):
        rare(step(n, snapshot))
    assert [m["iteration"] for m in sent if "thumbnail" in m] == [1]  # then one per interval
    assert (snapshots, rare.thumbnails) == (1, 1)

    sent.clear()
    every = ProgressReporter(JOB_ID, sent.append, interval=0, thumbnail_after=0, thumbnail_interval=0)
    every(step(1, snapshot))
    every(step(2, None))  # an engine without snapshots: progress as before
    assert "thumbnail" in sent[0]
    assert "thumbnail" not in sent[1]


def test_a_thumbnail_is_a_small_jpeg_data_url():
    sent: list[dict[str, Any]] = []
    ProgressReporter(JOB_ID, sent.append, thumbnail_after=0)(step(1, lambda: PAINTING))
    url = sent[0]["thumbnail"]
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    data = base64.b64decode(url[len(prefix) :])
    assert len(data) <= THUMBNAIL_MAX_BYTES
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert max(image.size) == THUMBNAIL_SIDE
    assert image.size[0] > image.size[1]
