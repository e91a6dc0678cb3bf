import pytest
import torch
from styletransfer.vgg import LAYERS, MEAN_BGR, VGGFeatures, from_caffe, to_caffe


def test_caffe_preprocessing_is_bgr_0_255_minus_mean():
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0  # pure red in RGB 0..1
    caffe = to_caffe(red).flatten().tolist()
    assert caffe == pytest.approx([-MEAN_BGR[0], -MEAN_BGR[1], 255.0 - MEAN_BGR[2]])


def test_caffe_round_trip():
    rgb = torch.rand(1, 3, 5, 7)
    assert torch.allclose(from_caffe(to_caffe(rgb)), rgb, atol=1e-6)


def test_runs_only_up_to_the_deepest_requested_layer():
    model = VGGFeatures(["relu1_1", "relu2_1"])
    names = [name for name, _ in model.body.named_children()]
    assert names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1"]
    assert "relu5_4" in LAYERS
    assert len(LAYERS) == 16 * 2 + 4


def test_feature_shapes_and_relu():
    model = VGGFeatures(["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"])
    out = model(to_caffe(torch.rand(1, 3, 64, 48)))
    shapes = {name: tuple(t.shape) for name, t in out.items()}
    assert shapes == {
        "relu1_1": (1, 64, 64, 48),
        "relu2_1": (1, 128, 32, 24),
        "relu3_1": (1, 256, 16, 12),
        "relu4_1": (1, 512, 8, 6),
        "relu4_2": (1, 512, 8, 6),
        "relu5_1": (1, 512, 4, 3),
    }
    assert all((t >= 0).all() for t in out.values())
    assert not any(p.requires_grad for p in model.parameters())


def test_gradient_reaches_the_image():
    model = VGGFeatures(["relu3_1"])
    image = to_caffe(torch.rand(1, 3, 32, 32)).requires_grad_(True)
    model(image)["relu3_1"].sum().backward()
    assert image.grad is not None
    assert image.grad.abs().sum() > 0


def test_bad_layer_and_pooling_are_rejected():
    with pytest.raises(ValueError, match="relu9_9"):
        VGGFeatures(["relu9_9"])
    with pytest.raises(ValueError, match="pooling"):
        VGGFeatures(["relu1_1"], pooling="median")
