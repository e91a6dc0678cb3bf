"""agent/benchmarks/tradeoffs.py's emulation of tensor-core rounding: it must change the objective
it claims to change (and nothing else), or its study measures nothing."""

from __future__ import annotations

import pytest
import torch
from styletransfer.losses import gram, style_loss, total_loss

from .conftest import load_benchmark

tradeoffs = load_benchmark("tradeoffs")


def test_round_mantissa_rounds_to_nearest_even():
    one_ulp_of_bf16 = 2.0**-7
    x = torch.tensor([1.0, 1.0 + one_ulp_of_bf16 / 4, 1.0 + one_ulp_of_bf16 * 3 / 4, 1.0 + one_ulp_of_bf16 / 2, -3.0])
    rounded = tradeoffs.round_mantissa(x, 7)
    # a quarter step down, three quarters up, the tie to the even neighbour (1.0); -3 is exact
    assert rounded.tolist() == [1.0, 1.0, 1.0 + one_ulp_of_bf16, 1.0, -3.0]


@pytest.mark.parametrize("bits", [7, 10])
def test_rounded_gram_inputs_change_the_style_terms_only_while_asked(bits):
    torch.manual_seed(0)
    features = (torch.randn(1, 6, 8, 8) * 37).requires_grad_(True)
    image = torch.randn(1, 3, 16, 16)
    target = gram(torch.randn(1, 6, 8, 8))
    exact = float(total_loss({"a": features}, image, {}, {"a": target}, 5.0, 100.0, 0.0).detach())
    with tradeoffs.gram_inputs_rounded(bits):
        loss = total_loss({"a": features}, image, {}, {"a": target}, 5.0, 100.0, 0.0)
        (grad,) = torch.autograd.grad(loss, features)
    rounded = tradeoffs.round_mantissa(features.detach(), bits)
    assert float(loss.detach()) == pytest.approx(float(style_loss(rounded, target, 100.0)), rel=1e-6)
    assert float(loss.detach()) != pytest.approx(exact, rel=1e-7)  # the emulation did change it
    assert grad.abs().sum() > 0  # the gradient goes straight through the rounding
    restored = total_loss({"a": features}, image, {}, {"a": target}, 5.0, 100.0, 0.0)
    assert float(restored.detach()) == exact
