"""The Gatys et al. objective, with jcjohnson/neural-style's normalisations.

All statistics are computed in float32 even when the network runs in bfloat16: Gram matrices
sum over every pixel and lose precision (fp16 would even overflow).

Each weighted term is one autograd Function with its gradient written out. The value and the
gradient are those of the plain expressions (a test holds them to autograd of `gram`,
`F.mse_loss` and the TV formula, and to finite differences), in fewer and smaller kernels, which
is what an iteration on a GPU is made of once it is a CUDA graph:

- style: autograd of F·Fᵀ runs two products of the features' size and adds them; the Gram matrix
  is symmetric, so one product of (dG + dGᵀ) with F does, and G - T comes out of the same product
  as G (`baddbmm`). The gradient keeps the features' memory layout (channels-last on a GPU), so
  autograd adds it to the network's gradient without a strided copy;
- content: the difference is taken in fp32 straight from bf16 features (no cast copy first);
- total variation: its gradient is four shifted adds into one buffer, where autograd of slices
  builds four zero-filled copies and adds them;
- the terms are summed with one stack and one sum, not an add per term.

One choice does round differently from the plain expression, measured first: on bf16 features the
style gradient's product runs in bf16 (LOW_PRECISION_STYLE_GRADIENT, below).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

# On bf16 features, whether the style term's gradient product runs in bf16 too (with fp32 sums),
# straight from the features: no fp32 copy of them kept for the backward pass and no cast after
# it, but (dG + dGᵀ) rounded to bf16. Off: that product in fp32 (TF32 on a GPU), then cast.
# Measured on this project's CPU (native bf16; agent/benchmarks/tradeoffs.py): no worse on average,
# within L-BFGS's own spread, and faster (docs/history/benchmarks-2026-11.md, "Quality trade-offs").
LOW_PRECISION_STYLE_GRADIENT = True

CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for bf16/fp16/fp32 features; fp64 stays fp64 (for gradcheck)."""
    return torch.promote_types(dtype, torch.float32)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a dense tensor, in memory order (NCHW or channels-last alike)."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)  # NHWC is contiguous: a view
    return t.reshape(-1)


def _square_sum(t: torch.Tensor) -> torch.Tensor:
    flat = _flat(t)
    return torch.dot(flat, flat)


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (N, C, H, W) features, divided by C*H*W: (N, C, C)."""
    n, c, h, w = features.shape
    flat = features.to(_working_dtype(features.dtype)).reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class _StyleLoss(torch.autograd.Function):
    """weight · mean((gram(F) - T)²)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = features.shape
        scale = 1.0 / (c * h * w)
        low_precision = features.dtype in (torch.bfloat16, torch.float16)
        # A view for NCHW and for channels-last features alike (then its rows are strided: GEMMs
        # read that layout as it is).
        own = features.reshape(n, c, h * w)
        flat = features.to(_working_dtype(features.dtype)).reshape(n, c, h * w)  # a copy only for bf16
        diff = torch.baddbmm(target, flat, flat.mT, beta=-1.0, alpha=scale)  # gram(F) - T
        k = weight / diff.numel()
        ctx.low_precision = LOW_PRECISION_STYLE_GRADIENT and low_precision
        # The features themselves are kept anyway (the next layer's input): no extra memory.
        ctx.save_for_backward(own if ctx.low_precision else flat, diff)
        ctx.coefficient = 2.0 * k * scale
        ctx.features = (features.shape, features.dtype, _is_channels_last(features))
        return _square_sum(diff) * k

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        flat, diff = ctx.saved_tensors
        shape, dtype, channels_last = ctx.features
        # d loss/dG = 2k·diff·grad_loss; through G = scale·F·Fᵀ that is scale·(dG + dGᵀ)·F.
        symmetric = (diff + diff.mT).mul_(grad_loss * ctx.coefficient).to(flat.dtype)
        # Channels-last features: the product as (HW, C) rows, which is their own memory order.
        grad = torch.bmm(flat.mT, symmetric).mT if channels_last else torch.bmm(symmetric, flat)
        return grad.reshape(shape).to(dtype), None, None


class _ContentLoss(torch.autograd.Function):
    """weight · mean((F - T)²)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        diff = torch.sub(features, target.to(_working_dtype(features.dtype)))  # promotes bf16 in the same kernel
        k = weight / diff.numel()
        ctx.save_for_backward(diff)
        ctx.coefficient = 2.0 * k
        ctx.dtype = features.dtype
        return _square_sum(diff) * k

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (diff,) = ctx.saved_tensors
        grad = torch.empty_like(diff, dtype=ctx.dtype)
        torch.mul(diff, grad_loss * ctx.coefficient, out=grad)  # scaled and cast in one kernel
        return grad, None, None


class _TotalVariation(torch.autograd.Function):
    """weight · (Σ dx² + Σ dy²) / 2, dx and dy the differences of neighbouring pixels."""

    @staticmethod
    def forward(ctx, image: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        ctx.save_for_backward(dx, dy)
        ctx.weight, ctx.shape = weight, image.shape
        return (_square_sum(dx) + _square_sum(dy)) * (weight / 2)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        dx, dy = ctx.saved_tensors
        grad = dx.new_zeros(ctx.shape)
        # Each difference pulls its right (lower) pixel up and its left (upper) pixel down.
        # (In place on views: `grad[...] += dx` would also copy each result onto itself.)
        grad[..., :, 1:].add_(dx)
        grad[..., :, :-1].sub_(dx)
        grad[..., 1:, :].add_(dy)
        grad[..., :-1, :].sub_(dy)
        return grad.mul_(grad_loss * ctx.weight), None


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def content_loss(features: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return _ContentLoss.apply(features, target, weight)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return _StyleLoss.apply(features, target_gram, weight)


def tv_loss(image: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Squared total variation, summed over pixels (neural-style's TVLoss, in caffe space)."""
    return _TotalVariation.apply(image, weight)


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
    terms = [content_loss(features[name], target, content_weight) for name, target in content_targets.items()]
    terms += [style_loss(features[name], target, style_weight) for name, target in style_targets.items()]
    if tv_weight:
        terms.append(tv_loss(image.to(_working_dtype(image.dtype)), tv_weight))
    if not terms:
        return image.new_zeros((), dtype=torch.float32)
    return torch.stack(terms).sum()
