"""The instant preview, and whether starting L-BFGS from it (init="preview") pays.

    python benchmarks/bench_preview.py [--pairs 4] [--preset preview] [--size 256] [--repeat 5]

1. The preview's own time: `styleservice.preview.make_preview` (decode both JPEGs, the
   feed-forward network, the result) for each pair, warm (the network loaded once per process, as
   in the preview Lambda), median of `--repeat`.
2. For each pair (scikit-image's photos x the catalogue's paintings), the engine's run from the
   photo (the default, init="content") and from the preview (`run(..., init_image=preview)`), with
   the same options. Each run records every iteration's loss and the seconds since it started.
   Losses are comparable only at one size, so both are read at the final scale:

   - loss after 10 final-scale iterations, and at the end;
   - time to quality: the seconds until the final-scale loss first reaches the content start's
     own final loss (the quality the preset promises today). For the preview start its preview's
     seconds are added; "-" when it never gets there.

Figures go to docs/performance.md. Not a test: a timing depends on the
machine and on what else runs.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from styleservice import preview
from styleservice.preview import make_preview, network
from styletransfer import preset, run

ROOT = Path(__file__).resolve().parents[1]
PAINTINGS = ("starry-night", "the-great-wave", "the-scream", "udnie", "woman-with-a-hat", "shipwreck")
PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")


@dataclass
class Trace:
    seconds: list[float]  # since the run started, at each final-scale iteration
    losses: list[float]  # the loss at the start of that iteration
    final_loss: float
    total_seconds: float


def jpeg(image: Image.Image) -> bytes:
    """A photo as an upload would bring it: an RGB JPEG of quality 92."""
    return preview.jpeg(image.convert("RGB"), quality=92)


def traced(content: Image.Image, style: Image.Image, options, init_image: Image.Image | None) -> Trace:
    started = time.perf_counter()
    seconds: list[float] = []
    losses: list[float] = []

    def record(progress) -> None:
        if progress.scale == progress.scales:
            seconds.append(time.perf_counter() - started)
            losses.append(progress.loss)

    result = run(content, style, options, progress=record, init_image=init_image)
    return Trace(seconds, losses, result.loss, time.perf_counter() - started)


def time_to(trace: Trace, target: float, offset: float) -> float | None:
    for seconds, loss in zip([*trace.seconds, trace.total_seconds], [*trace.losses, trace.final_loss], strict=True):
        if loss <= target:
            return seconds + offset
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="photo/painting pairs (default: %(default)s)")
    parser.add_argument("--preset", default="preview", help="the engine's preset (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="result's long side in px (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="preview timings per pair (default: %(default)s)")
    args = parser.parse_args(argv)

    from skimage import data  # public-domain photos (the dev extra installs scikit-image)

    shipped = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}
    pairs = [(PHOTOS[i % len(PHOTOS)], PAINTINGS[i % len(PAINTINGS)]) for i in range(args.pairs)]
    options = preset(args.preset, size=args.size)
    machine = platform.processor() or platform.machine()
    shape = f"{options.scales} scales x {options.iterations} iterations"
    print(f"# {machine}, torch threads {torch.get_num_threads()}, preset {args.preset} at {args.size} px ({shape})")
    network()  # loaded once per process, as in the preview Lambda
    make_preview(jpeg(shipped[PHOTOS[0]]), (ROOT / "catalogue" / f"{PAINTINGS[0]}.jpg").read_bytes(), size=64)

    rows = []
    for photo_name, painting in pairs:
        photo = shipped[photo_name]
        photo_bytes = jpeg(photo)
        style_bytes = (ROOT / "catalogue" / f"{painting}.jpg").read_bytes()
        style = Image.open(io.BytesIO(style_bytes)).convert("RGB")
        preview_seconds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            preview = make_preview(photo_bytes, style_bytes, size=args.size)
            preview_seconds.append(time.perf_counter() - started)
        made_in = statistics.median(preview_seconds)
        from_photo = traced(photo, style, options, None)
        from_preview = traced(photo, style, options, preview)
        target = from_photo.final_loss
        rows.append(
            (
                f"{photo_name} x {painting}",
                made_in,
                from_photo.losses[10] if len(from_photo.losses) > 10 else float("nan"),
                from_preview.losses[10] if len(from_preview.losses) > 10 else float("nan"),
                from_photo.final_loss,
                from_preview.final_loss,
                time_to(from_photo, target, 0.0),
                time_to(from_preview, target, made_in),
            )
        )
        print(f"row: {row(rows[-1])}", flush=True)  # as it comes: a long run can be read before its end

    print()
    print("| pair | preview s | loss after 10 (photo / preview start) | final loss (photo / preview start) "
          "| time to quality s (photo / preview start) |")  # fmt: skip
    print("| --- | --: | --: | --: | --: |")
    for values in rows:
        print(row(values))
    return 0


def row(values: tuple) -> str:
    name, made_in, early_photo, early_preview, final_photo, final_preview, ttq_photo, ttq_preview = values

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"| {name} | {made_in:.2f} | {early_photo:.3g} / {early_preview:.3g} | {final_photo:.3g} / "
        f"{final_preview:.3g} | {seconds(ttq_photo)} / {seconds(ttq_preview)} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
