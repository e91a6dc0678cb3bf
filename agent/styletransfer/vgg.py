"""VGG-19 feature extractor that runs only the layers the losses need.

Images enter as RGB in 0..1 and are converted to what the Caffe weights expect: BGR, 0..255,
with the ImageNet mean pixel subtracted ("caffe space"). The optimiser works in caffe space too,
so loss weights mean the same as in jcjohnson/neural-style.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn

from .weights import CONV_LAYERS, load_vgg19_weights

# ImageNet mean pixel in BGR order, as subtracted when the Caffe model was trained.
MEAN_BGR = (103.939, 116.779, 123.68)


@functools.cache
def _mean(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Made once per device: on a GPU a tensor made from host values is a copy that waits for the
    # device, which every scale's targets would otherwise pay for again.
    return torch.tensor(MEAN_BGR, dtype=dtype, device=device).view(1, 3, 1, 1)


def to_caffe(rgb: torch.Tensor) -> torch.Tensor:
    """RGB 0..1 (N, 3, H, W) -> BGR 0..255 minus the mean pixel."""
    return rgb.flip(1) * 255.0 - _mean(rgb.dtype, rgb.device)


def from_caffe(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_caffe`, clamped to the displayable range."""
    return ((x + _mean(x.dtype, x.device)) / 255.0).flip(1).clamp(0.0, 1.0)


def _layer_sequence() -> list[str]:
    """Caffe names of every layer in order: conv, relu, and a pool after each block."""
    names: list[str] = []
    for conv in CONV_LAYERS:
        block, index = conv.removeprefix("conv").split("_")
        if names and not names[-1].startswith(f"relu{block}_"):
            names.append(f"pool{int(block) - 1}")
        names += [conv, f"relu{block}_{index}"]
    return names


LAYERS: tuple[str, ...] = tuple(_layer_sequence())


class VGGFeatures(nn.Module):
    """The prefix of VGG-19 that ends at the deepest requested layer; returns those layers' outputs."""

    def __init__(self, layers: Iterable[str], pooling: str = "max") -> None:
        super().__init__()
        self.outputs = tuple(dict.fromkeys(layers))
        unknown = [name for name in self.outputs if name not in LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG-19 layer(s): {', '.join(unknown)}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        last = max(LAYERS.index(name) for name in self.outputs)
        weights = load_vgg19_weights()
        self.body = nn.Sequential()
        for name in LAYERS[: last + 1]:
            if name.startswith("conv"):
                weight, bias = weights[name]
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=3, padding=1)
                conv.weight.data.copy_(weight)
                conv.bias.data.copy_(bias)
                module: nn.Module = conv
            elif name.startswith("relu"):
                # In place is safe: the next layer (conv or pool) keeps its own input for backward.
                module = nn.ReLU(inplace=True)
            else:
                module = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
            self.body.add_module(name, module)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        for name, module in self.body.named_children():
            x = module(x)
            if name in self.outputs:
                features[name] = x
        return features
