import pytest
import torch
import torch.nn.functional as F
from styletransfer.losses import blended_gram, content_loss, gram, style_loss, total_loss, tv_loss
from torch.utils._python_dispatch import TorchDispatchMode


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


# The terms are autograd Functions with their gradients written out (fewer kernels per
# iteration); these hold them to autograd of the plain expressions and to finite differences.


def _plain_gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    m = f.double().reshape(n, c, h * w)
    return m @ m.mT / (c * h * w)


def _plain_total(features, image, content_targets, style_targets, cw, sw, tw):
    """The objective written the obvious way, in fp64, for autograd to differentiate."""
    loss = image.new_zeros((), dtype=torch.float64)
    for name, target in content_targets.items():
        loss = loss + cw * F.mse_loss(features[name].double(), target.double())
    for name, target in style_targets.items():
        loss = loss + sw * F.mse_loss(_plain_gram(features[name]), target.double())
    x = image.double()
    dx, dy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    return loss + tw * (dx.square().sum() + dy.square().sum()) / 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_value_and_gradient_match_autograd_of_the_plain_objective(dtype, channels_last):
    torch.manual_seed(1)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    shallow = torch.randn(1, 8, 20, 28).relu().contiguous(memory_format=layout).to(dtype)
    deep = torch.randn(1, 16, 5, 7).relu().contiguous(memory_format=layout).to(dtype)
    image = torch.randn(1, 3, 20, 28) * 50
    content_targets = {"deep": torch.randn(1, 16, 5, 7).relu()}
    style_targets = {
        "shallow": _plain_gram(torch.randn(1, 8, 20, 28).relu()).float(),
        "deep": _plain_gram(torch.randn(1, 16, 5, 7).relu()).float(),
    }
    results = []
    for objective in (total_loss, _plain_total):
        inputs = [t.clone().requires_grad_(True) for t in (shallow, deep, image)]
        features = {"shallow": inputs[0], "deep": inputs[1]}
        loss = objective(features, inputs[2], content_targets, style_targets, 5.0, 100.0, 1e-3)
        grads = torch.autograd.grad(loss * 3.0, inputs)  # a gradient from above that is not 1
        results.append((loss.double().item(), grads))
    (loss, grads), (expected_loss, expected_grads) = results
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    # bf16 gradients are rounded to bf16 either way: within one of its steps (2^-8 relative)
    tolerance = 1e-5 if dtype == torch.float32 else 2**-7
    for grad, expected in zip(grads, expected_grads, strict=True):
        assert grad.dtype == expected.dtype
        scale = expected.double().abs().max()
        assert (grad.double() - expected.double()).abs().max() <= tolerance * scale
    if channels_last:  # the style gradient keeps the features' layout: no strided add after it
        assert grads[0].is_contiguous(memory_format=torch.channels_last)


def test_each_term_passes_gradcheck():
    torch.manual_seed(2)
    features = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    gram_target = _plain_gram(torch.randn(1, 3, 4, 5))
    content_target = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: style_loss(f, gram_target, 7.0), (features,))
    cl = features.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: style_loss(f, gram_target, 7.0), (cl,))
    assert torch.autograd.gradcheck(lambda f: content_loss(f, content_target, 3.0), (features,))
    assert torch.autograd.gradcheck(lambda f: tv_loss(f, 0.5), (features,))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_style_gradient_is_one_product_of_the_features_size():
    features = torch.randn(1, 8, 16, 16, requires_grad=True)
    loss = style_loss(features, torch.zeros(1, 8, 8), 1.0)
    counter = _CountOps()
    with counter:
        loss.backward()
    assert [name for name in counter.names if "mm" in name] == ["bmm"]  # autograd of F·Fᵀ: two, and an add


def test_no_terms_is_zero():
    assert total_loss({}, torch.ones(1, 3, 4, 4), {}, {}, 5.0, 100.0, 0.0).item() == 0.0


def test_the_objective_reads_nothing_back_to_the_host():
    """On the meta device any read of a value raises: so the loss terms, forward and backward,
    take no decision on the host and can be captured in a CUDA graph with the rest of an iteration."""
    meta = "meta"
    features = torch.empty(1, 8, 6, 6, device=meta, dtype=torch.bfloat16)
    features = features.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    image = torch.empty(1, 3, 12, 12, device=meta, requires_grad=True)
    targets = ({"a": torch.empty(1, 8, 6, 6, device=meta)}, {"a": torch.empty(1, 8, 8, device=meta)})
    loss = total_loss({"a": features}, image, *targets, 5.0, 100.0, 1e-3)
    grads = torch.autograd.grad(loss, [features, image])
    assert loss.device.type == "meta"
    assert [g.shape for g in grads] == [features.shape, image.shape]
    with pytest.raises(RuntimeError, match="meta"):
        loss.item()  # the check itself is real: a host read on meta fails


@pytest.mark.parametrize("low_precision", [True, False])
def test_bf16_style_gradient_keeps_no_fp32_copy_of_the_features(monkeypatch, low_precision):
    """With LOW_PRECISION_STYLE_GRADIENT (the default) the backward product reads the bf16 features
    themselves: nothing of the features' size is kept in fp32 for it. Either way the gradient is
    the fp64 one within bf16's rounding."""
    from styletransfer import losses

    monkeypatch.setattr(losses, "LOW_PRECISION_STYLE_GRADIENT", low_precision)
    torch.manual_seed(3)
    features = (torch.randn(1, 16, 12, 10).relu() * 30).to(torch.bfloat16)
    features = features.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    target = gram(torch.randn(1, 16, 12, 10).relu() * 30)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = style_loss(features, target, 100.0)
    kept_in_fp32 = [t for t in saved if t.dtype == torch.float32 and t.numel() == features.numel()]
    assert bool(kept_in_fp32) is not low_precision
    (grad,) = torch.autograd.grad(loss, features)
    exact = features.detach().double().requires_grad_(True)
    (expected,) = torch.autograd.grad(style_loss(exact, target.double(), 100.0), exact)
    assert grad.dtype == torch.bfloat16
    assert grad.is_contiguous(memory_format=torch.channels_last)
    assert float((grad.double() - expected).norm() / expected.norm()) < 2**-7
