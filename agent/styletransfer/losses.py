"""The Gatys et al. objective, with jcjohnson/neural-style's normalisations.

All statistics are computed in float32 even when the network runs in bfloat16: Gram matrices
sum over every pixel and lose precision (fp16 would even overflow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (N, C, H, W) features, divided by C*H*W: (N, C, C)."""
    n, c, h, w = features.shape
    flat = features.float().reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(features.float(), target)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(gram(features), target_gram)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Squared total variation, summed over pixels (neural-style's TVLoss, in caffe space)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return (dx.square().sum() + dy.square().sum()) / 2


def blended_gram(grams: Sequence[torch.Tensor], blend: Sequence[float]) -> torch.Tensor:
    """Style targets of several style images, mixed by weight (weights are normalised to sum 1)."""
    total = float(sum(blend))
    return sum(g * (b / total) for g, b in zip(grams, blend, strict=True))  # type: ignore[return-value]


def total_loss(
    features: Mapping[str, torch.Tensor],
    image: torch.Tensor,
    content_targets: Mapping[str, torch.Tensor],
    style_targets: Mapping[str, torch.Tensor],
    content_weight: float,
    style_weight: float,
    tv_weight: float,
) -> torch.Tensor:
    """Weighted sum of content, style (equal weight per layer) and total-variation losses."""
    loss = image.new_zeros((), dtype=torch.float32)
    for name, target in content_targets.items():
        loss = loss + content_weight * content_loss(features[name], target)
    for name, target in style_targets.items():
        loss = loss + style_weight * style_loss(features[name], target)
    if tv_weight:
        loss = loss + tv_weight * tv_loss(image.float())
    return loss
