"""The sync-free L-BFGS: the same iterates as torch.optim.LBFGS, and nothing a CUDA graph forbids."""

import pytest
import torch
from styletransfer.lbfgs import LBFGS

N = 30


def problem(seed: int = 0):
    """A smooth non-convex function: a quadratic bowl with ripples, so some steps have negative
    curvature (sᵀy <= 0) and their pairs must be left out."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(N, N, generator=generator, dtype=torch.float64)
    a = a @ a.T / N + 0.1 * torch.eye(N, dtype=torch.float64)
    b = torch.randn(N, generator=generator, dtype=torch.float64)
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.3 * torch.cos(3 * x).sum()


def torch_iterates(f, steps: int, history: int, lr: float = 1.0):
    x = torch.zeros(N, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [x], lr=lr, max_iter=1, history_size=history, tolerance_grad=-1.0, tolerance_change=-1.0
    )

    def closure():
        optimizer.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    iterates = []
    for _ in range(steps):
        optimizer.step(closure)
        iterates.append(x.detach().clone())
    return iterates, len(optimizer.state[x]["old_dirs"])


def our_iterates(f, steps: int, history: int, lr: float = 1.0):
    x = torch.zeros(N, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS(x.detach(), history=history, lr=lr)
    iterates = []
    for _ in range(steps):
        (grad,) = torch.autograd.grad(f(x), x)
        optimizer.step(x.detach(), grad)
        iterates.append(x.detach().clone())
    return iterates, int(optimizer.stored)


@pytest.mark.parametrize("history", [3, 100], ids=["history wraps around", "history never fills"])
@pytest.mark.parametrize("seed", [0, 1])
def test_same_iterates_as_torch_lbfgs(history, seed):
    f = problem(seed)
    theirs, their_stored = torch_iterates(f, 25, history)
    ours, our_stored = our_iterates(f, 25, history)
    assert our_stored == their_stored
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), f"iterate {step + 1} differs"
    assert f(ours[-1]) < f(ours[0])


def test_pairs_with_negative_curvature_are_left_out():
    """The test problem does produce them, so the comparison above covers the curvature test."""
    _, stored = our_iterates(problem(0), 25, 100)
    assert stored < 24  # 24 pairs were offered (none from the first step)


def test_first_step_is_scaled_by_the_gradients_l1_norm():
    x = torch.full((4,), 10.0, dtype=torch.float64)
    grad = torch.tensor([1.0, -2.0, 3.0, -4.0], dtype=torch.float64)
    LBFGS(x, lr=0.5).step(x, grad)
    assert torch.allclose(x, 10.0 - 0.5 * grad / 10.0)


def test_the_lr_scales_later_steps():
    f = problem(0)
    theirs, _ = torch_iterates(f, 6, 10, lr=0.3)
    ours, _ = our_iterates(f, 6, 10, lr=0.3)
    assert torch.allclose(ours[-1], theirs[-1], rtol=1e-9, atol=1e-9)


def test_a_step_reads_nothing_back_to_the_host():
    """On the meta device any read of a tensor's value (`if t:`, `.item()`, `float(t)`) raises:
    so a step that runs there takes no decision on the host and can be captured in a CUDA graph."""
    x = torch.zeros(3, 8, 8, device="meta")
    optimizer = LBFGS(x, history=4)
    for _ in range(6):  # past the point where the history wraps around
        optimizer.step(x, torch.zeros_like(x))
    with pytest.raises(RuntimeError, match="meta"):
        bool(optimizer.stored)  # the check itself is real: a host read on meta fails


def test_state_is_updated_in_place():
    """A CUDA graph replays reads and writes at captured addresses: no state tensor may be replaced."""
    f = problem(0)
    x = torch.zeros(N, dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS(x.detach(), history=3)
    state = {name: value for name, value in vars(optimizer).items() if isinstance(value, torch.Tensor)}
    addresses = {name: value.data_ptr() for name, value in state.items()}
    for _ in range(8):
        (grad,) = torch.autograd.grad(f(x), x)
        optimizer.step(x.detach(), grad)
    assert {name: getattr(optimizer, name).data_ptr() for name in state} == addresses
    assert int(optimizer.stored) == 3


def test_history_must_hold_a_pair():
    with pytest.raises(ValueError, match="history must be at least 1"):
        LBFGS(torch.zeros(3), history=0)
