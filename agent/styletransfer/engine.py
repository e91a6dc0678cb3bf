"""Gatys et al. style transfer: optimise an image so its VGG-19 features match the content
image's (relu4_2) and its Gram matrices match the style images' (relu1_1 ... relu5_1).

One call runs coarse to fine: each scale starts from the previous scale's result, upsampled,
so most iterations run on small images.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from . import color
from .device import Plan, applied, resolve_plan
from .images import fit_size, resize_tensor, resized, to_image, to_tensor
from .iterations import Objective, ScaleIterations
from .losses import CONTENT_LAYERS, STYLE_LAYERS, blended_gram, gram, total_loss
from .options import MAX_SIZE, MAX_STYLES, Options
from .vgg import VGGFeatures, from_caffe, to_caffe


@dataclass(frozen=True)
class Progress:
    iteration: int  # 1-based, counted over all scales
    total: int
    loss: float  # objective at the start of this iteration, at the current scale
    scale: int  # 1-based
    scales: int
    size: tuple[int, int]  # (width, height) being optimised
    # The image as it is now, made only when called (e.g. for a thumbnail every few seconds).
    snapshot: Callable[[], Image.Image] | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class ScaleTiming:
    """Where one scale's time went. Each time is read on the host's clock right after the host
    waited for the device (the loss reads), so on a GPU it is the device's time too."""

    size: tuple[int, int]
    iterations: int
    seconds: float  # the whole scale: its targets, its start image, the iterations, its final loss
    first_read: float  # from the scale's start until the first losses reached the host
    first_iterations: int  # how many iterations those first losses were
    last_read: float  # from the scale's start until the last losses reached the host

    @property
    def per_iteration(self) -> float | None:
        """Seconds per iteration at the scale's steady pace: after its first read."""
        steady = self.iterations - self.first_iterations
        if steady <= 0:
            return None
        return (self.last_read - self.first_read) / steady

    @property
    def setup(self) -> float:
        """What the scale cost beyond its iterations at that pace: the targets, the start image and
        the first iterations' extra (eager warm-up, CUDA graph capture, kernels loaded on first use)."""
        pace = self.per_iteration
        return self.first_read - self.first_iterations * pace if pace is not None else self.first_read

    def summary(self) -> dict[str, object]:
        """For a log line or a JSON file: size, iterations, seconds, setup, milliseconds per iteration."""
        pace = self.per_iteration
        return {
            "size": list(self.size),
            "iterations": self.iterations,
            "seconds": round(self.seconds, 4),
            "setup": round(self.setup, 4),
            "msPerIteration": None if pace is None else round(1000 * pace, 4),
        }


@dataclass(frozen=True)
class Result:
    image: Image.Image
    loss: float  # objective of the returned image at the final scale
    iterations: int
    seconds: float  # wall time of the optimisation, image preparation included
    scales: tuple[ScaleTiming, ...] = ()  # coarse to fine


@functools.lru_cache(maxsize=4)
def feature_model(
    pooling: str, device: torch.device, channels_last: bool, dtype: torch.dtype = torch.float32
) -> VGGFeatures:
    """VGG-19 up to relu5_1 on `device` in `dtype`, built once per process and kept for later jobs."""
    model = VGGFeatures(CONTENT_LAYERS + STYLE_LAYERS, pooling=pooling).to(device=device, dtype=dtype)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def load_model(options: Options, plan: Plan | None = None) -> torch.device:
    """Build (or find) the network that `run` will use with these options and plan (None: the
    device's defaults, `resolve_plan()`), ahead of the run: a worker does it once, as it starts.
    Returns its device. (Loading the kernels early is the worker's business, which warms them for
    the sizes it expects: agent/stylize_worker/serve.py, warm_up.)"""
    plan = plan or resolve_plan()
    _network(options, plan)
    return plan.device


def _network(options: Options, plan: Plan) -> VGGFeatures:
    return feature_model(options.pooling, plan.device, plan.channels_last, plan.dtype)


def stylize(
    content: Image.Image,
    styles: Image.Image | Sequence[Image.Image],
    options: Options | None = None,
    progress: ProgressCallback | None = None,
    init_image: Image.Image | None = None,
    *,
    plan: Plan | None = None,
) -> Image.Image:
    """Return `content` repainted in the style of `styles` (one image, or several blended);
    `init_image`, if given, is where the optimisation starts instead of `options.init`. `plan`
    says how it runs (None: the device's defaults, `device.resolve_plan()`)."""
    return run(content, styles, options, progress, init_image, plan=plan).image


def run(
    content: Image.Image,
    styles: Image.Image | Sequence[Image.Image],
    options: Options | None = None,
    progress: ProgressCallback | None = None,
    init_image: Image.Image | None = None,
    *,
    plan: Plan | None = None,
) -> Result:
    """:func:`stylize`, also returning the final loss and timing."""
    started = time.perf_counter()
    with _job(content, styles, options or Options(), plan or resolve_plan(), progress, init_image) as job:
        image, loss = job.run()
    seconds = time.perf_counter() - started
    return Result(image, loss, job.total, seconds, scales=tuple(job.timings))


@contextlib.contextmanager
def final_objective(
    content: Image.Image,
    styles: Image.Image | Sequence[Image.Image],
    options: Options | None = None,
    plan: Plan | None = None,
) -> Iterator[tuple[Objective, torch.Tensor]]:
    """The objective a run with these options and plan optimises at its last scale, and the
    content image there in caffe space, with the plan's settings in force: for checks that compare
    the engine's objective and gradient with the reference's at the same image."""
    with _job(content, styles, options or Options(), plan or resolve_plan(), None) as job:
        objective, seen_content = job.scale_objective(job.sizes[-1])
        yield objective, to_caffe(seen_content)


@contextlib.contextmanager
def _job(
    content: Image.Image,
    styles: Image.Image | Sequence[Image.Image],
    options: Options,
    plan: Plan,
    progress: ProgressCallback | None,
    init_image: Image.Image | None = None,
) -> Iterator[_Job]:
    styles = [styles] if isinstance(styles, Image.Image) else list(styles)
    if not 1 <= len(styles) <= MAX_STYLES:
        raise ValueError(f"give between 1 and {MAX_STYLES} style images, not {len(styles)}")
    if options.style_blend and len(options.style_blend) != len(styles):
        raise ValueError(f"{len(options.style_blend)} blend weights given for {len(styles)} style images")
    with applied(plan):
        yield _Job(content, styles, options, plan, progress, init_image)


# relu5_1 sits after four 2x2 poolings: a side under 16 px leaves it no pixels at all.
MIN_SIDE = 16
# init="noise" starts as jcjohnson/neural-style's `-init random` does: randn * 0.001 in caffe space,
# the mean pixel and a trace of noise. Uniform noise over the whole pixel range ended rougher and at
# a higher loss (docs/engine.md, "The noise start").
NOISE_SCALE = 0.001


def _style_side(style_scale: float, size: tuple[int, int]) -> int:
    """Long side of the style images when the output is `size`."""
    return min(MAX_SIZE, round(style_scale * max(size)))


def _check_thickness(what: str, original: tuple[int, int], scaled: tuple[int, int]) -> None:
    if min(scaled) < MIN_SIDE:
        raise ValueError(
            f"{what} is {original[0]}x{original[1]}: too thin to use (it would be {scaled[0]}x{scaled[1]} px, "
            f"and every side must be at least {MIN_SIDE} px); crop it or use a larger --size"
        )


class _Job:
    """One style-transfer run: the images, the model and the optimisation across scales."""

    def __init__(
        self,
        content: Image.Image,
        styles: list[Image.Image],
        options: Options,
        plan: Plan,
        progress: ProgressCallback | None,
        init_image: Image.Image | None = None,
    ) -> None:
        self.options = options
        self.plan = plan
        self.init_image = init_image
        self.device = plan.device
        self.progress = progress
        self.styles = [style.convert("RGB") for style in styles]
        self.blend = options.style_blend or (1.0,) * len(styles)
        self.content = to_tensor(resized(content.convert("RGB"), options.size)).to(self.device)
        self.sizes = [fit_size(*content.size, long_side) for long_side in options.scale_sizes()]
        self.total = options.iterations * len(self.sizes)
        _check_thickness("content image", content.size, self.sizes[0])
        for number, style in enumerate(self.styles, start=1):
            side = _style_side(options.style_scale, self.sizes[0])
            _check_thickness(f"style image {number}", style.size, fit_size(*style.size, side))
        self.done = 0
        self.timings: list[ScaleTiming] = []
        self.model = _network(options, plan)
        # Every scale's style images go to the device now: a copy from the host waits for the
        # device, so made between two scales it would leave the GPU idle until it is done.
        self._styles_at = {size: self._uploaded_styles(size) for size in self.sizes}

    def run(self) -> tuple[Image.Image, float]:
        image = None
        loss = float("nan")
        for index, size in enumerate(self.sizes, start=1):
            image, loss = self._optimise_scale(index, size, image)
        assert image is not None
        rgb = from_caffe(image)
        if self.options.preserve_colors:
            rgb = color.with_chroma_of(rgb, self.content)
        return to_image(rgb), loss

    def _picture(self, caffe_image: torch.Tensor) -> Image.Image:
        """The image being optimised, as a picture in the content's colours when those are kept."""
        rgb = from_caffe(caffe_image.detach())
        if self.options.preserve_colors:
            rgb = color.with_chroma_of(rgb, resize_tensor(self.content, (rgb.shape[-1], rgb.shape[-2])))
        return to_image(rgb)

    def _features(self, caffe_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's features of an fp32 image: cast and laid out in one copy per call."""
        return self.model(caffe_image.to(self.plan.dtype, memory_format=self.plan.memory_format))

    @torch.no_grad()
    def _targets(self, size: tuple[int, int]) -> tuple[torch.Tensor, dict, dict]:
        """The content image at this scale, its relu4_2 features and the blended style Grams."""
        content = resize_tensor(self.content, size)
        style_images = self._style_images(size)
        if self.options.preserve_colors:
            style_images = [color.match_luminance(style, content) for style in style_images]
            seen_content = color.luminance(content)
        else:
            seen_content = content
        features = self._features(to_caffe(seen_content))
        content_targets = {name: features[name].float().clone() for name in CONTENT_LAYERS}
        per_style = [self._features(to_caffe(style)) for style in style_images]
        style_targets = {
            name: blended_gram([gram(features[name]) for features in per_style], self.blend) for name in STYLE_LAYERS
        }
        return seen_content, content_targets, style_targets

    def _style_images(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """The style images on the device at their size for this scale: those uploaded at the
        start, once; any later call uploads them again."""
        made = self._styles_at.pop(size, None)
        return self._uploaded_styles(size) if made is None else made

    def _uploaded_styles(self, size: tuple[int, int]) -> list[torch.Tensor]:
        side = _style_side(self.options.style_scale, size)
        return [to_tensor(resized(style, side)).to(self.device) for style in self.styles]

    def _initial(self, seen_content: torch.Tensor) -> torch.Tensor:
        if self.init_image is not None:
            height, width = seen_content.shape[-2:]
            return to_caffe(resize_tensor(to_tensor(self.init_image.convert("RGB")).to(self.device), (width, height)))
        if self.options.init == "content":
            return to_caffe(seen_content)
        # Generated on the CPU so that a seed gives the same start on every device.
        generator = torch.Generator().manual_seed(self.options.seed)
        return (torch.randn(seen_content.shape, generator=generator) * NOISE_SCALE).to(self.device)

    def scale_objective(self, size: tuple[int, int]) -> tuple[Objective, torch.Tensor]:
        """The objective at one scale (a function of the caffe-space image) and the content image
        as the optimiser sees it there (its luminance only when colours are preserved), RGB 0..1."""
        seen_content, content_targets, style_targets = self._targets(size)
        o = self.options
        weights = (o.content_weight, o.effective_style_weight, o.tv_weight)

        def objective(x: torch.Tensor) -> torch.Tensor:
            return total_loss(self._features(x), x, content_targets, style_targets, *weights)

        return objective, seen_content

    def _iterations(self, objective: Objective, image: torch.Tensor) -> ScaleIterations:
        o, plan = self.options, self.plan
        return ScaleIterations(objective, image, o.iterations, o.optimizer, o.learning_rate, plan.capture, o.history)

    def _optimise_scale(
        self, index: int, size: tuple[int, int], previous: torch.Tensor | None
    ) -> tuple[torch.Tensor, float]:
        """Runs one scale; returns its result and its final loss (the last scale's only: no one
        reads the others')."""
        started = time.perf_counter()
        reads: list[tuple[float, int]] = []  # (seconds since the start, iterations) at each read
        objective, seen_content = self.scale_objective(size)
        start = self._initial(seen_content) if previous is None else resize_tensor(previous, size)
        image = start.detach().clone().contiguous().requires_grad_(True)
        iterations = self._iterations(objective, image)

        def report(losses: list[float]) -> None:
            reads.append((time.perf_counter() - started, len(losses)))
            for loss in losses:
                self.done += 1
                if self.progress is not None:
                    snapshot = functools.partial(self._picture, image)
                    self.progress(Progress(self.done, self.total, loss, index, len(self.sizes), size, snapshot))

        iterations.run(report)
        final_loss = float("nan")
        if index == len(self.sizes):
            with torch.no_grad():
                final_loss = float(objective(image))
        (first_read, first_iterations), (last_read, _) = reads[0], reads[-1]
        seconds = time.perf_counter() - started
        timing = ScaleTiming(size, self.options.iterations, seconds, first_read, first_iterations, last_read)
        self.timings.append(timing)
        return image.detach(), final_loss
