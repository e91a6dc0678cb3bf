"""Images for the engine's tests, made here: tests never depend on files outside the repository."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from styletransfer import Options, Plan
from styletransfer.engine import final_objective
from styletransfer.reference import Scorer, fp32, reference_loss
from styletransfer.samples import stained_glass, swirls

BENCHMARKS = Path(__file__).resolve().parents[2] / "agent" / "benchmarks"


def load_script(path: Path) -> ModuleType:
    """A script (not in a package) as the module named after its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """agent/benchmarks/<name>.py as the module `name`."""
    return load_script(BENCHMARKS / f"{name}.py")


def photo_like(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth colourful scene with a few edges: gradients, a disc and a bar."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    image = np.stack([0.3 + 0.5 * x, 0.2 + 0.6 * y, 0.6 - 0.3 * x * y], axis=-1)
    cy, cx = rng.uniform(0.2, 0.5, 2)
    image[(x - cx) ** 2 + (y - cy) ** 2 < 0.03] = (0.85, 0.3, 0.2)
    image[(y > 0.45) & (y < 0.5)] = (0.1, 0.1, 0.15)
    return Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8))


@pytest.fixture
def content() -> Image.Image:
    return photo_like()


@pytest.fixture
def style() -> Image.Image:
    return stained_glass(96, cells=20, seed=1)


@pytest.fixture
def second_style() -> Image.Image:
    return swirls(96, seed=2)


@pytest.fixture
def image_files(tmp_path: Path, content: Image.Image, style: Image.Image) -> tuple[Path, Path]:
    content_path, style_path = tmp_path / "content.png", tmp_path / "style.jpg"
    content.save(content_path)
    style.save(style_path)
    return content_path, style_path


@dataclass(frozen=True)
class SameImage:
    """The engine's objective and gradient beside the plain fp32 reference's, at one image."""

    engine_loss: float
    reference_loss: float
    cosine: float  # of the two gradients
    norm_ratio: float  # |engine gradient| / |reference gradient|

    @property
    def loss_error(self) -> float:
        return abs(self.engine_loss / self.reference_loss - 1)


def _noisy(start: torch.Tensor, seed: int) -> torch.Tensor:
    """The content image plus fixed noise (so no term is at its minimum), requiring grad."""
    noise = torch.randn(start.shape, generator=torch.Generator().manual_seed(seed)).to(start.device)
    return (start + 20 * noise).requires_grad_(True)


def _loss_and_gradient(objective: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor):
    loss = objective(image)
    (grad,) = torch.autograd.grad(loss, image)
    return float(loss.detach()), grad.detach().float()


def compare_at_same_image(
    content: Image.Image, style: Image.Image, options: Options, plan: Plan | None = None, seed: int = 5
) -> SameImage:
    """Both objectives at the content image plus fixed noise, the reference in fp32 with TF32
    off, on the plan's device."""
    with final_objective(content, style, options, plan) as (objective, start):
        image = _noisy(start, seed)
        engine_loss, engine_grad = _loss_and_gradient(objective, image)
    scorer = Scorer(content, style, options.size, device=start.device)
    with fp32():
        reference_image = image.detach().clone().requires_grad_(True)
        weights = (options.content_weight, options.effective_style_weight, options.tv_weight)
        args = (scorer.model, scorer.taps, reference_image, scorer.content_target, scorer.style_grams, weights)
        reference = reference_loss(*args)
        (reference_grad,) = torch.autograd.grad(reference, reference_image)
    cosine = float(torch.nn.functional.cosine_similarity(engine_grad.flatten(), reference_grad.flatten(), dim=0))
    return SameImage(engine_loss, float(reference.detach()), cosine, float(engine_grad.norm() / reference_grad.norm()))


@pytest.fixture
def same_image():
    return compare_at_same_image


def compiled_and_eager(
    content: Image.Image, style: Image.Image, options: Options, plan: Plan | None = None, seed: int = 5
) -> tuple[tuple[float, torch.Tensor], tuple[float, torch.Tensor]]:
    """(loss, gradient) of the objective run eagerly and compiled by torch.compile (what
    capture="compile" runs), at the content image plus fixed noise."""
    with final_objective(content, style, options, plan) as (objective, start):
        image = _noisy(start, seed)
        compiled = torch.compile(objective, dynamic=False, fullgraph=True)
        return _loss_and_gradient(objective, image), _loss_and_gradient(compiled, image)


@pytest.fixture
def compiled_vs_eager():
    return compiled_and_eager
