"""The engine's two hooks for the service: starting from a given image (init_image) and a
snapshot of the image being optimised in each progress report (for thumbnails)."""

import numpy as np
from PIL import Image
from styletransfer import Options, Progress, resolve_plan, run

TINY = Options(size=64, iterations=1, scales=1)
FP32 = resolve_plan(precision="fp32")


def test_init_image_is_where_the_optimisation_starts(content, style):
    # One L-BFGS iteration barely moves the image: the result stays near where it started.
    blue = Image.new("RGB", (20, 10), (0, 0, 255))  # another size and aspect: resized to fit
    from_blue = np.asarray(run(content, style, TINY, init_image=blue, plan=FP32).image, dtype=float)
    from_photo = np.asarray(run(content, style, TINY, plan=FP32).image, dtype=float)
    assert from_blue.shape == from_photo.shape
    assert from_blue[..., 2].mean() - from_blue[..., 0].mean() > 100  # still blue
    assert from_photo[..., 2].mean() - from_photo[..., 0].mean() < 50  # the photo's colours


def test_progress_snapshot_is_the_current_image(content, style):
    reports: list[Progress] = []
    result = run(content, style, TINY.replace(iterations=3), progress=reports.append, plan=FP32)
    assert all(report.snapshot is not None for report in reports)
    first = reports[0].snapshot()
    assert first.size == result.image.size
    # taken after the run, the last report's snapshot is the final image
    assert np.array_equal(np.asarray(reports[-1].snapshot()), np.asarray(result.image))


def test_snapshot_keeps_the_content_colours_when_asked(content, style):
    reports: list[Progress] = []
    run(content, style, TINY.replace(iterations=2, preserve_colors=True), progress=reports.append, plan=FP32)
    picture = np.asarray(reports[0].snapshot(), dtype=float)
    assert np.abs(picture[..., 0] - picture[..., 2]).mean() > 5  # in colour, not the grey it optimises
