"""The worker's part in watching it paint and in sensible defaults: thumbnails in some progress
messages (late enough, rarely enough, small enough), and the preset that suits the device."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
import torch
from PIL import Image
from stylejob.job import Job, JobOptions
from stylejob.messages import ProgressMessage
from styletransfer import Progress
from styletransfer.options import PRESETS
from stylize_worker.painting import engine_options
from stylize_worker.progress import THUMBNAIL_MAX_BYTES, THUMBNAIL_SIDE, ProgressReporter

JOB_ID = "0123456789abcdef0123456789abcdef"


def job(**options: Any) -> Job:
    return Job.new(private=False, content_type="image/png", style_key="styles/udnie.jpg",
                   options=JobOptions.model_validate(options))  # fmt: skip


def reporter(sent: list[dict[str, Any]], **settings: Any) -> ProgressReporter:
    """A reporter whose messages land in `sent`, as the results queue would carry them."""
    return ProgressReporter(JOB_ID, lambda message: sent.append(json.loads(message.body())), log=print, **settings)


PAINTING = Image.effect_noise((640, 400), 80).convert("RGB")  # noise: the hardest picture to compress


def step(n: int, snapshot: Any = None, total: int = 100) -> Progress:
    return Progress(iteration=n, total=total, loss=1.0, scale=1, scales=1, size=(640, 400), snapshot=snapshot)


def test_a_job_without_options_or_with_auto_gets_the_preset_for_its_device(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    defaults = {"strength": 0.5, "style_scale": 1.0, "seed": 0, "preserve_colors": False}  # the contract's
    assert engine_options(job()) == PRESETS["preview"].replace(**defaults)  # on a CPU
    assert engine_options(job(preset="auto", size=None)) == PRESETS["preview"]
    assert engine_options(job(preset="auto", size=64)) == PRESETS["preview"].replace(size=64)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engine_options(job()) == PRESETS["standard"]  # on a GPU
    assert engine_options(job(preset="auto")) == PRESETS["standard"]
    assert engine_options(job(preset="preview")) == PRESETS["preview"]  # a named preset is kept


def test_options_map_onto_the_engine_preset():
    assert engine_options(job(preset="preview", size=None)).size == 256  # None: the preset's own
    options = engine_options(
        job(preset="standard", size=128, strength=0.8, preserveColors=True, styleScale=0.5, seed=7)
    )
    assert (options.size, options.iterations, options.strength) == (128, 200, 0.8)
    assert (options.preserve_colors, options.style_scale, options.seed) == (True, 0.5, 7)


def test_a_blend_gives_the_engine_one_weight_per_style_image():
    blended = Job.new(private=False, content_type="image/png", style_key="styles/udnie.jpg",
                      blend_keys=["styles/the-scream.jpg"],
                      options=JobOptions.model_validate({"styleBlend": [0.7, 0.3]}))  # fmt: skip
    assert blended.style_keys == ["styles/udnie.jpg", "styles/the-scream.jpg"]
    assert engine_options(blended).style_blend == (0.7, 0.3)
    assert engine_options(job()).style_blend == ()  # one style: the engine's default
    # the message of a job of one style is the one every reader of the contract knew
    assert "blendKeys" not in job().message()
    assert "styleBlend" not in job().message()["options"]
    assert blended.message()["blendKeys"] == ["styles/the-scream.jpg"]


def test_progress_is_sent_first_then_at_most_every_interval_and_never_for_the_last_iteration():
    sent: list[dict[str, Any]] = []
    slow = reporter(sent, interval=60)
    for n in range(1, 101):
        slow(step(n))
    assert sent == [{"requestId": JOB_ID, "type": "progress", "progress": 0.01, "iteration": 1, "total": 100}]

    sent.clear()
    eager = reporter(sent, interval=0)
    for n in range(1, 101):
        eager(step(n))
    assert [m["iteration"] for m in sent] == list(range(1, 100))

    def broken(message: ProgressMessage) -> None:
        raise ConnectionError("SQS is down")

    logged: list[str] = []
    ProgressReporter(JOB_ID, broken, log=lambda text, **_: logged.append(text))(step(1))  # not raised
    assert logged == ["progress not sent"]


def test_the_checkpoint_sees_every_iteration_and_may_stop_the_painting():
    seen: list[tuple[float, float]] = []
    every = reporter([], interval=60, checkpoint=lambda done, seconds: seen.append((done, seconds)))
    for n in range(1, 11):
        every(step(n, total=10))
    assert [done for done, _ in seen] == [n / 10 for n in range(1, 11)]  # throttling does not skip it

    def stop(done: float, seconds: float) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        reporter([], checkpoint=stop)(step(1))


def test_thumbnails_come_only_after_a_while_then_at_most_every_interval():
    snapshots = 0

    def snapshot() -> Image.Image:
        nonlocal snapshots
        snapshots += 1
        return PAINTING

    sent: list[dict[str, Any]] = []
    short = reporter(sent, interval=0, thumbnail_after=60)
    for n in range(1, 100):
        short(step(n, snapshot))
    assert len(sent) == 99
    assert not any("thumbnail" in m for m in sent)
    assert snapshots == 0  # and no image made for nothing

    sent.clear()
    rare = reporter(sent, interval=0, thumbnail_after=0, thumbnail_interval=60)
    for n in range(1, 100):
        rare(step(n, snapshot))
    assert [m["iteration"] for m in sent if "thumbnail" in m] == [1]  # then one per interval
    assert (snapshots, rare.thumbnails) == (1, 1)

    sent.clear()
    every = reporter(sent, interval=0, thumbnail_after=0, thumbnail_interval=0)
    every(step(1, snapshot))
    every(step(2, None))  # an engine without snapshots: progress as before
    assert "thumbnail" in sent[0]
    assert "thumbnail" not in sent[1]


def test_a_thumbnail_is_a_small_jpeg_data_url():
    sent: list[dict[str, Any]] = []
    reporter(sent, thumbnail_after=0)(step(1, lambda: PAINTING))
    url = sent[0]["thumbnail"]
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    data = base64.b64decode(url[len(prefix) :])
    assert len(data) <= THUMBNAIL_MAX_BYTES
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert max(image.size) == THUMBNAIL_SIDE
    assert image.size[0] > image.size[1]
