import pytest
import torch
from styletransfer.losses import blended_gram, content_loss, gram, style_loss, total_loss, tv_loss


def test_gram_of_one_channel_is_mean_square():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # N=1, C=1, H=W=2
    assert gram(features).item() == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_gram_of_two_channels():
    a = [[1.0, 0.0], [2.0, 1.0]]
    b = [[0.0, 3.0], [1.0, 1.0]]
    g = gram(torch.tensor([[a, b]]))  # C=2, H=W=2: divide by 8
    expected = torch.tensor([[[6.0, 3.0], [3.0, 11.0]]]) / 8
    assert torch.allclose(g, expected)


def test_gram_is_float32_for_bfloat16_features():
    features = torch.full((1, 4, 8, 8), 300.0, dtype=torch.bfloat16)
    g = gram(features)
    assert g.dtype == torch.float32
    assert torch.allclose(g, torch.full((1, 4, 4), 300.0**2 / (4 * 64) * 64))


def test_content_and_style_losses():
    target = torch.zeros(1, 2, 2, 2)
    features = torch.ones(1, 2, 2, 2)
    assert content_loss(features, target).item() == pytest.approx(1.0)
    assert style_loss(features, gram(features)).item() == 0.0
    # ones: every Gram entry is 4/8 = 0.5, against a zero target: mean square 0.25
    assert style_loss(features, torch.zeros(1, 2, 2)).item() == pytest.approx(0.25)


def test_tv_loss_on_known_image():
    image = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    # horizontal differences 1 and 1, vertical 0 and 0: (1 + 1) / 2
    assert tv_loss(image).item() == pytest.approx(1.0)
    assert tv_loss(torch.full((1, 3, 5, 5), 7.0)).item() == 0.0


def test_blend_normalises_weights():
    a, b = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    assert torch.allclose(blended_gram([a, b], [3, 1]), torch.full((1, 2, 2), 0.75))
    assert torch.equal(blended_gram([a, b], [1, 0]), a)


def test_total_loss_is_the_weighted_sum():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 6, 6)
    features = {"relu4_2": torch.randn(1, 4, 3, 3), "relu1_1": torch.randn(1, 4, 6, 6)}
    content_target = {"relu4_2": torch.randn(1, 4, 3, 3)}
    style_target = {"relu1_1": torch.randn(1, 4, 4)}
    loss = total_loss(features, image, content_target, style_target, 5.0, 100.0, 1e-3)
    expected = (
        5.0 * content_loss(features["relu4_2"], content_target["relu4_2"])
        + 100.0 * style_loss(features["relu1_1"], style_target["relu1_1"])
        + 1e-3 * tv_loss(image)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
