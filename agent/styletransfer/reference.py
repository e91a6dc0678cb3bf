"""A plain reference implementation of the same objective, for benchmarks and tests.

Deliberately unoptimised and written independently of the engine: the whole VGG-19 up to
relu5_1 as one nn.Sequential, fp32, NCHW, one scale, torch's L-BFGS in a single step. Only the
weights file loader is shared. The engine must match its loss; the benchmark must beat its time.
"""

from __future__ import annotations

import contextlib

import torch
from PIL import Image
from torch import nn

from .images import resized, to_tensor
from .vgg import to_caffe
from .weights import CONV_LAYERS, load_vgg19_weights

# Positions (0-based, counting convs and relus as in Caffe) of the layers the loss reads.
_BLOCK_SIZES = (2, 2, 4, 4, 1)  # convs per block, up to conv5_1
CONTENT = "relu4_2"
STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def reference_vgg(device: torch.device | str = "cpu") -> tuple[nn.Sequential, dict[str, int]]:
    layers: list[nn.Module] = []
    taps: dict[str, int] = {}
    weights = iter(CONV_LAYERS)
    for block, convs in enumerate(_BLOCK_SIZES, start=1):
        if block > 1:
            layers.append(nn.MaxPool2d(2, 2))
        for index in range(1, convs + 1):
            weight, bias = load_vgg19_weights()[next(weights)]
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
            conv.weight.data, conv.bias.data = weight.clone(), bias.clone()
            layers += [conv, nn.ReLU()]
            taps[f"relu{block}_{index}"] = len(layers) - 1
    model = nn.Sequential(*layers).eval().to(device)
    for parameter in model.parameters():
        parameter.requires_grad = False
    return model, taps


def _features(model: nn.Sequential, taps: dict[str, int], x: torch.Tensor) -> dict[str, torch.Tensor]:
    wanted = {index: name for name, index in taps.items() if name == CONTENT or name in STYLE}
    out = {}
    for index, layer in enumerate(model):
        x = layer(x)
        if index in wanted:
            out[wanted[index]] = x
    return out


def _gram(f: torch.Tensor) -> torch.Tensor:
    _, c, h, w = f.shape
    m = f.view(c, h * w)
    return torch.mm(m, m.t()) / (c * h * w)


def reference_loss(
    model: nn.Sequential,
    taps: dict[str, int],
    image: torch.Tensor,
    content_target: torch.Tensor,
    style_grams: dict[str, torch.Tensor],
    weights: tuple[float, float, float],
) -> torch.Tensor:
    content_weight, style_weight, tv_weight = weights
    f = _features(model, taps, image)
    loss = content_weight * ((f[CONTENT] - content_target) ** 2).mean()
    for name in STYLE:
        loss = loss + style_weight * ((_gram(f[name]) - style_grams[name]) ** 2).mean()
    return loss + total_variation(image, tv_weight)


def total_variation(image: torch.Tensor, tv_weight: float) -> torch.Tensor:
    """The objective's smoothness term: tv_weight times half the sum of squared differences of
    neighbouring pixels, in caffe space."""
    tv = ((image[:, :, :, 1:] - image[:, :, :, :-1]) ** 2).sum() + (
        (image[:, :, 1:, :] - image[:, :, :-1, :]) ** 2
    ).sum()
    return tv_weight * tv / 2


def reference_targets(
    model: nn.Sequential, taps: dict[str, int], content: torch.Tensor, style: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The content image's relu4_2 features and the style image's Gram matrices."""
    with torch.no_grad():
        content_target = _features(model, taps, content)[CONTENT]
        style_features = _features(model, taps, style)
        return content_target, {name: _gram(style_features[name]) for name in STYLE}


def reference_stylize(
    content: torch.Tensor,
    style: torch.Tensor,
    iterations: int,
    weights: tuple[float, float, float] = (5.0, 100.0, 1e-3),
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Optimise from `start` (default: the content image); inputs and output in caffe space.
    Returns (image, final loss)."""
    model, taps = reference_vgg(content.device)
    content_target, style_grams = reference_targets(model, taps, content, style)
    image = (content if start is None else start).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [image],
        lr=1.0,
        max_iter=iterations,
        max_eval=2 * iterations,
        history_size=100,
        tolerance_grad=-1.0,
        tolerance_change=-1.0,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = reference_loss(model, taps, image, content_target, style_grams, weights)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = reference_loss(model, taps, image, content_target, style_grams, weights)
    return image.detach(), float(final)


class Scorer:
    """One objective for every result of a comparison: the reference's, fp32 (no TF32), at the
    final size, on the 8-bit image a user gets. The content and style are prepared as the engine
    prepares them for its last scale (the photo fitted to `size`, the style's long side `size`)."""

    def __init__(
        self,
        content: Image.Image,
        style: Image.Image,
        size: int,
        weights: tuple[float, float, float] = (5.0, 100.0, 1e-3),
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.weights = weights
        self.content = to_caffe(to_tensor(resized(content.convert("RGB"), size))).to(self.device)
        self.style = to_caffe(to_tensor(resized(style.convert("RGB"), size))).to(self.device)
        self.model, self.taps = reference_vgg(self.device)
        with fp32():
            self.content_target, self.style_grams = reference_targets(self.model, self.taps, self.content, self.style)

    def score(self, image: Image.Image) -> float:
        caffe = self._caffe(image)
        with torch.no_grad(), fp32():
            args = (self.model, self.taps, caffe, self.content_target, self.style_grams, self.weights)
            return float(reference_loss(*args))

    def roughness(self, image: Image.Image) -> float:
        """The score's total-variation term alone: how rough the result is."""
        return float(total_variation(self._caffe(image), self.weights[2]))

    def _caffe(self, image: Image.Image) -> torch.Tensor:
        caffe = to_caffe(to_tensor(image.convert("RGB"))).to(self.device)
        if caffe.shape != self.content.shape:
            raise ValueError(f"a {image.size[0]}x{image.size[1]} result cannot be scored at this size")
        return caffe


def fp32() -> contextlib.AbstractContextManager[None]:
    """Plain fp32 convolutions and products (torch allows TF32 in cuDNN by default)."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
