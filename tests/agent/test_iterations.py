"""One scale's iterations: capturable as a whole, losses reported in order and in batches."""

import gc

import pytest
import torch
from styletransfer.device import check_capture
from styletransfer.iterations import ScaleIterations, collector_paused
from styletransfer.losses import CONTENT_LAYERS, STYLE_LAYERS, gram, total_loss
from styletransfer.vgg import VGGFeatures


def quadratic(target: torch.Tensor):
    return lambda x: ((x - target) ** 2).sum() + 0.1 * (x**4).sum()


def test_the_whole_iteration_reads_nothing_back_to_the_host():
    """VGG-19's forward and backward, the Gatys objective and the L-BFGS step, on the meta device
    (where reading any tensor's value raises): the iteration a CUDA graph captures needs nothing
    from the host."""
    model = VGGFeatures(CONTENT_LAYERS + STYLE_LAYERS).to("meta")
    image = torch.zeros(1, 3, 32, 32, device="meta", requires_grad=True)
    with torch.no_grad():
        features = model(torch.zeros(1, 3, 32, 32, device="meta"))
        content = {name: features[name] for name in CONTENT_LAYERS}
        style = {name: gram(features[name]) for name in STYLE_LAYERS}

    def objective(x: torch.Tensor) -> torch.Tensor:
        return total_loss(model(x), x, content, style, 5.0, 100.0, 1e-3)

    iterations = ScaleIterations(objective, image, iterations=4)
    for _ in range(4):
        iterations.step()
    with pytest.raises(RuntimeError, match="meta"):
        iterations.run(lambda losses: None)  # ...and the host's batched read of the losses is the one that does


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_losses_arrive_in_order_in_batches(optimizer):
    target = torch.linspace(-1, 1, 12)
    image = torch.zeros(12, requires_grad=True)
    iterations = ScaleIterations(quadratic(target), image, iterations=17, optimizer=optimizer, learning_rate=0.1)
    iterations.report_every = 5
    batches: list[list[float]] = []
    iterations.run(batches.append)
    assert [len(batch) for batch in batches] == [5, 5, 5, 2]
    losses = [loss for batch in batches for loss in batch]
    assert losses[0] == pytest.approx(float(quadratic(target)(torch.zeros(12))))
    assert losses[-1] < losses[0] / 5


def test_adam_steps_as_torch_adam_does():
    target = torch.linspace(-1, 1, 12)
    f = quadratic(target)
    image = torch.zeros(12, requires_grad=True)
    ScaleIterations(f, image, iterations=10, optimizer="adam", learning_rate=0.05).run(lambda losses: None)
    plain = torch.zeros(12, requires_grad=True)
    adam = torch.optim.Adam([plain], lr=0.05)
    for _ in range(10):
        adam.zero_grad()
        f(plain).backward()
        adam.step()
    assert torch.allclose(image, plain)


def test_unknown_capture_and_cuda_graph_on_cpu_are_errors():
    with pytest.raises(ValueError, match="capture must be one of auto, none, compile, cuda_graph"):
        check_capture("jit", torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ScaleIterations(lambda x: x.sum(), torch.zeros(3, requires_grad=True), 2, capture="cuda_graph")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_paused_for_a_capture_and_then_left_as_it_was(enabled):
    """The pause that keeps a stray CUDA graph from being destroyed mid-capture (the GPU test
    test_a_stray_graph_in_a_cycle_waits_until_the_capture_ends shows what for)."""
    (gc.enable if enabled else gc.disable)()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError, match="capture failed"), collector_paused():
            raise RuntimeError("capture failed")
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
