"""One scale's iterations: capturable as a whole, losses reported in order and in batches."""

import gc

import pytest
import torch
from styletransfer.iterations import ScaleIterations, check_capture, collector_paused
from styletransfer.lbfgs import LBFGS
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


def test_history_chunk_reaches_the_optimiser():
    """Options.history_chunk decides how the L-BFGS history products run (one product on a CPU)."""
    image = torch.zeros(1, 3, 8, 8, requires_grad=True)

    def objective(x: torch.Tensor) -> torch.Tensor:
        return (x - 1).square().sum()

    assert ScaleIterations(objective, image, 2).lbfgs.chunks == 1
    chunked = ScaleIterations(objective, image, 2, history_chunk=50)
    assert chunked.lbfgs.chunks == 4  # 192 values in chunks of 50, padded to 200
    chunked.run(lambda losses: None)
    assert torch.allclose(image, torch.ones_like(image), atol=1e-3)  # and it still optimises


def _tensors(optimiser: object) -> dict[str, torch.Tensor]:
    return {name: value for name, value in vars(optimiser).items() if isinstance(value, torch.Tensor)}


def test_an_lbfgs_reset_is_a_new_optimiser_in_place():
    """Every tensor of its state back to a new optimiser's, at the same address (a captured graph
    keeps reading them there). Looks at every tensor attribute, so one added later is checked too."""
    target = torch.linspace(-1, 1, 40)
    x = torch.zeros(40)
    used, new = LBFGS(x, history=5, chunk=16), LBFGS(x, history=5, chunk=16)
    for _ in range(8):
        g = 2 * (x - target) + 0.4 * x**3
        used.step(x, g)
    addresses = {name: value.data_ptr() for name, value in _tensors(used).items()}
    assert any(not torch.equal(value, _tensors(new)[name]) for name, value in _tensors(used).items())
    used.reset()
    for name, value in _tensors(used).items():
        assert torch.equal(value, _tensors(new)[name]), name
        assert value.data_ptr() == addresses[name], name


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_scale_prepared_on_a_probe_runs_as_a_new_one_from_its_start(optimizer):
    """prepare() warms up on another image (what the engine does before the start image exists),
    then puts everything back: the iterations from the start are exactly a new instance's."""
    target = torch.linspace(-1, 1, 12)
    start = torch.full((12,), 0.3)
    kwargs = {"iterations": 9, "optimizer": optimizer, "learning_rate": 0.1}
    new_image = start.clone().requires_grad_(True)
    new_losses: list[float] = []
    ScaleIterations(quadratic(target), new_image, **kwargs).run(new_losses.extend)

    image = torch.zeros(12, requires_grad=True)
    prepared = ScaleIterations(quadratic(target), image, **kwargs)
    prepared.prepare(probe=torch.linspace(2, -2, 12))
    assert torch.equal(prepared.count, torch.tensor(0))  # the warm-up's iterations are not counted
    prepared.begin(start)
    losses: list[float] = []
    prepared.run(losses.extend)
    assert losses == new_losses
    assert torch.equal(image, new_image)


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


def test_join_and_begin_need_prepare():
    unprepared = ScaleIterations(lambda x: x.sum(), torch.zeros(3, requires_grad=True), 2)
    with pytest.raises(RuntimeError, match=r"join\(\) and begin\(\) come after prepare\(\)"):
        unprepared.begin(torch.ones(3))
    with pytest.raises(RuntimeError, match=r"join\(\) and begin\(\) come after prepare\(\)"):
        unprepared.join()


@pytest.mark.parametrize(("iterations", "first_batch"), [(17, 5), (4, 4)])
def test_meanwhile_runs_once_after_the_first_read_and_before_the_rest(iterations, first_batch):
    """The host's work between launching the iterations and reading their losses: after the first
    batch (whose read shows the scale's setup), before any later loss is read, exactly once (also
    when the first batch was all of them), and the losses are those of a run without it."""
    target = torch.linspace(-1, 1, 12)
    events: list[object] = []
    plain: list[float] = []
    ScaleIterations(quadratic(target), torch.zeros(12, requires_grad=True), iterations=iterations).run(plain.extend)
    iterations_ = ScaleIterations(quadratic(target), torch.zeros(12, requires_grad=True), iterations=iterations)
    iterations_.report_every = 5
    steady = iterations_.run(events.append, meanwhile=lambda: events.append("meanwhile"))
    assert events[0] == plain[:first_batch]
    assert events[1] == "meanwhile"
    assert [loss for batch in events if batch != "meanwhile" for loss in batch] == plain
    assert events.count("meanwhile") == 1
    assert steady is None  # the device's own clock is CUDA's
