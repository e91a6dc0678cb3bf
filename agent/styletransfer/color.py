"""Colour-space helpers for luminance-only transfer (Gatys et al., "Preserving Color in Neural
Artistic Style Transfer", 2016): style the luminance, keep the content's chroma."""

from __future__ import annotations

import functools

import torch

# NTSC YIQ: Y is luminance, I and Q carry the colour.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)


@functools.cache
def _yiq_to_rgb_matrix() -> torch.Tensor:
    # on first use, not at import: the first linalg call loads LAPACK, which every job (a fresh
    # process) would pay for at `import styletransfer` while only preserve_colors jobs need it
    return torch.linalg.inv(_RGB_TO_YIQ)


@functools.cache
def _on(inverse: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Copied to each device once: a copy from the host waits for the GPU, which every scale's
    # targets would otherwise pay for again.
    return (_yiq_to_rgb_matrix() if inverse else _RGB_TO_YIQ).to(dtype=dtype, device=device)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix, image)


def rgb_to_yiq(rgb: torch.Tensor) -> torch.Tensor:
    return _apply(_on(False, rgb.dtype, rgb.device), rgb)


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    return _apply(_on(True, yiq.dtype, yiq.device), yiq)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Grey image (luminance in all three channels), still RGB-shaped for VGG."""
    return rgb_to_yiq(rgb)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_rgb: torch.Tensor, content_rgb: torch.Tensor) -> torch.Tensor:
    """The style's luminance, shifted and scaled to the content's mean and spread (as in the paper)."""
    style_y = rgb_to_yiq(style_rgb)[:, :1]
    content_y = rgb_to_yiq(content_rgb)[:, :1]
    matched = (style_y - style_y.mean()) / style_y.std().clamp_min(1e-6) * content_y.std() + content_y.mean()
    return matched.clamp(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()


def with_chroma_of(styled_rgb: torch.Tensor, content_rgb: torch.Tensor) -> torch.Tensor:
    """The styled image's luminance combined with the content's I and Q channels."""
    yiq = torch.cat([rgb_to_yiq(styled_rgb)[:, :1], rgb_to_yiq(content_rgb)[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0.0, 1.0)
