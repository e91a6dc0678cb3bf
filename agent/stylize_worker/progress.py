"""What a worker says while it paints: progress on the results queue, some of it with a thumbnail
of the painting so far (see docs/architecture.md, "Watching it paint: bounded traffic")."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from stylejob.messages import ProgressMessage

if TYPE_CHECKING:
    from PIL import Image
    from styletransfer import Progress

PROGRESS_INTERVAL = 2.0  # seconds between progress messages: enough for a smooth bar, few SQS calls
# A progress message may carry a thumbnail of the image so far, inline (no S3 object, no extra
# request): only once the optimisation has run THUMBNAIL_AFTER seconds, then at most one every
# THUMBNAIL_INTERVAL, THUMBNAIL_SIDE px and at most THUMBNAIL_MAX_BYTES as a JPEG.
THUMBNAIL_AFTER = 4.0
THUMBNAIL_INTERVAL = 5.0
THUMBNAIL_SIDE = 192
THUMBNAIL_QUALITY = 70
THUMBNAIL_MAX_BYTES = 24 * 1024


def thumbnail(image: Image.Image) -> str | None:
    """A small JPEG of `image` as a data URL; None if even that would be too large to send."""
    from PIL import Image

    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    encoded = io.BytesIO()
    small.save(encoded, format="JPEG", quality=THUMBNAIL_QUALITY)
    if encoded.tell() > THUMBNAIL_MAX_BYTES:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


class ProgressReporter:
    """The engine's progress callback: sends a message on the first iteration, then at most one
    every `interval` seconds, never for the last (the "completed" message follows it). Once the
    optimisation has run `thumbnail_after` seconds, a message carries a thumbnail of the image so
    far, at most one every `thumbnail_interval` seconds. A failed send is logged, not raised: a
    missing progress update is not worth the job.

    `checkpoint`, if given, is called on every iteration with the fraction done and the seconds
    since the first: it may raise to stop the painting (the task was lost, the worker must stop)."""

    def __init__(
        self,
        job_id: str,
        send: Callable[[ProgressMessage], None],
        log: Callable[..., None],
        checkpoint: Callable[[float, float], None] | None = None,
        interval: float = PROGRESS_INTERVAL,
        thumbnail_after: float = THUMBNAIL_AFTER,
        thumbnail_interval: float = THUMBNAIL_INTERVAL,
    ) -> None:
        self.job_id = job_id
        self.send = send
        self.log = log
        self.checkpoint = checkpoint
        self.interval = interval
        self.thumbnail_after = thumbnail_after
        self.thumbnail_interval = thumbnail_interval
        self.started: float | None = None
        self.last: float | None = None
        self.last_thumbnail: float | None = None
        self.sent = 0
        self.thumbnails = 0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if self.checkpoint is not None:
            self.checkpoint(progress.iteration / progress.total, now - self.started)
        if progress.iteration >= progress.total or (self.last is not None and now - self.last < self.interval):
            return
        self.last = now
        small = None
        if self._thumbnail_due(now) and progress.snapshot is not None:
            self.last_thumbnail = now
            if (small := thumbnail(progress.snapshot())) is not None:
                self.thumbnails += 1
        update = ProgressMessage(
            request_id=self.job_id,
            progress=round(progress.iteration / progress.total, 4),
            iteration=progress.iteration,
            total=progress.total,
            thumbnail=small,
        )
        try:
            self.send(update)
            self.sent += 1
        except Exception as failure:  # e.g. SQS throttling: the next one may get through
            self.log("progress not sent", jobId=self.job_id, reason=repr(failure))

    def _thumbnail_due(self, now: float) -> bool:
        assert self.started is not None
        if now - self.started < self.thumbnail_after:
            return False
        return self.last_thumbnail is None or now - self.last_thumbnail >= self.thumbnail_interval
