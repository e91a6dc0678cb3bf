"""The CUDA fast paths on a real GPU. On a machine without CUDA these tests are skipped (the CPU
side of every fast path is tested in test_engine.py, test_iterations.py and test_lbfgs.py); on the
GPU machine they run in `benchmarks/gpu_check.sh` (see docs/benchmarks.md).

They compare like with like: the engine's objective and gradient against the plain fp32
reference's at the same image, the replayed CUDA graph against the same iterations run eagerly,
and long runs' final losses, scored by one objective, with a stated margin. Two short L-BFGS trajectories are never
compared for their outcome: rounding alone makes them diverge."""

import gc
import math

import pytest
import torch
from styletransfer import Options, resolve_plan, run
from styletransfer.images import resized, to_image, to_tensor
from styletransfer.iterations import ScaleIterations
from styletransfer.losses import CONTENT_LAYERS, STYLE_LAYERS, gram, total_loss
from styletransfer.reference import Scorer, fp32, reference_stylize
from styletransfer.vgg import VGGFeatures, from_caffe, to_caffe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
TINY = Options(size=64, iterations=10, scales=1)
LONG_RUN_MARGIN = 0.05  # the defaults' final loss may exceed the reference's by at most 5%


@pytest.mark.parametrize(
    ("fast_path", "loss_error", "cosine"),
    [
        ({"precision": "fp32", "tf32": False, "channels_last": False}, 1e-4, 0.99999),
        ({"precision": "fp32", "tf32": False}, 1e-4, 0.99999),  # channels-last
        ({"precision": "fp32"}, 0.005, 0.999),  # TF32 convolutions
        ({}, 0.02, 0.995),  # the CUDA defaults: bf16 network, TF32 Grams
    ],
    ids=["fp32", "channels_last", "tf32", "defaults_bf16"],
)
def test_each_precision_computes_the_reference_objective_and_gradient(
    content, style, same_image, fast_path, loss_error, cosine
):
    compared = same_image(content, style, TINY.replace(size=128), resolve_plan("cuda", **fast_path))
    print(f"{fast_path}: {compared}")
    assert compared.loss_error < loss_error
    assert compared.cosine > cosine
    assert compared.norm_ratio == pytest.approx(1, abs=3 * loss_error + 1e-4)


def test_compiled_objective_computes_the_eager_one(content, style, compiled_vs_eager):
    """torch.compile's fused objective and gradient against the same objective run eagerly, in
    fp32 without TF32 so that only the fusion differs."""
    plan = resolve_plan("cuda", "fp32", tf32=False)
    (eager, eager_grad), (compiled, compiled_grad) = compiled_vs_eager(content, style, TINY.replace(size=96), plan)
    assert compiled == pytest.approx(eager, rel=1e-3)
    cosine = torch.nn.functional.cosine_similarity(compiled_grad.flatten(), eager_grad.flatten(), dim=0)
    assert float(cosine) > 0.9999


def test_cuda_graph_replays_what_eager_runs(content, style):
    """Same settings (the defaults but for the capture), deterministic cuDNN: the replayed graph
    computes what the eager iterations compute, and keeps optimising (a replay that read stale
    buffers would repeat one loss or diverge)."""
    eager_losses: list[float] = []
    graph_losses: list[float] = []
    options = TINY.replace(iterations=30, init="noise")
    run(content, style, options, lambda p: eager_losses.append(p.loss), plan=resolve_plan("cuda", capture="none"))
    run(content, style, options, lambda p: graph_losses.append(p.loss), plan=resolve_plan("cuda", capture="cuda_graph"))
    assert len(graph_losses) == len(eager_losses) == 30
    assert graph_losses[0] == pytest.approx(eager_losses[0], rel=1e-5)  # the same image
    assert graph_losses[:5] == pytest.approx(eager_losses[:5], rel=1e-3)
    assert graph_losses[-1] < graph_losses[0] / 2
    assert len(set(graph_losses[5:])) == 25


class _Cycle:
    """Holds what it is given, and itself: only the cyclic garbage collector can free it."""

    def __init__(self, held: object) -> None:
        self.held = held
        self.me = self


def test_a_stray_graph_in_a_cycle_waits_until_the_capture_ends(content, style, monkeypatch):
    """A CUDA graph that only the cyclic collector can free (captured earlier, left in a reference
    cycle) must not be destroyed while a scale's graph is captured: that is not allowed while a
    stream captures, and it would invalidate the capture. Here the cycle becomes garbage in the
    middle of the capture, and the collector then gets a chance to run at each of 100 allocations;
    the capture pauses it (iterations.collector_paused), so the stray goes after."""
    stray = torch.cuda.CUDAGraph()
    with torch.cuda.graph(stray):
        torch.zeros(1, device="cuda")
    strays = [stray]
    del stray
    step = ScaleIterations.step
    dropped: list[bool] = []

    def step_that_drops_a_stray(self: ScaleIterations) -> None:
        if strays and torch.cuda.is_current_stream_capturing():
            _Cycle(strays.pop())  # garbage now, which only the collector frees
            dropped.append(gc.isenabled())
            threshold = gc.get_threshold()
            gc.set_threshold(1)
            try:
                made = [[] for _ in range(100)]  # each new container: a collection, if the collector is on
            finally:
                gc.set_threshold(*threshold)
            assert len(made) == 100
        step(self)

    monkeypatch.setattr(ScaleIterations, "step", step_that_drops_a_stray)
    result = run(content, style, TINY, plan=resolve_plan("cuda"))
    assert dropped == [False]  # dropped in a capture, with the collector paused
    assert math.isfinite(result.loss)
    gc.collect()  # now it goes, outside any capture


def test_a_long_run_with_the_defaults_is_as_good_as_the_reference(content, style):
    """400 iterations at 256 px, one scale, from the photo: the defaults (bf16, CUDA graph, the
    default L-BFGS history, TF32 Grams) against the plain fp32 reference with torch's L-BFGS and
    history 100, both scored by one fp32 objective on the 8-bit result."""
    size, iterations = 256, 400
    ours = run(content, style, Options(size=size, iterations=iterations, scales=1), plan=resolve_plan("cuda"))
    scorer = Scorer(content, style, size, device=CUDA)
    with fp32():
        content_caffe = to_caffe(to_tensor(resized(content, size))).cuda()
        style_caffe = to_caffe(to_tensor(resized(style, size))).cuda()
        reference_image, _ = reference_stylize(content_caffe, style_caffe, iterations)

    engine_score = scorer.score(ours.image)
    reference_score = scorer.score(to_image(from_caffe(reference_image)))
    print(f"after {iterations}: engine {engine_score:.5g}, reference {reference_score:.5g}")
    assert engine_score <= reference_score * (1 + LONG_RUN_MARGIN)


def test_an_iteration_never_waits_for_the_gpu():
    """torch's sync debug mode raises on any operation that makes the host wait for the device."""
    model = VGGFeatures(CONTENT_LAYERS + STYLE_LAYERS).cuda().to(torch.bfloat16)
    start = torch.randn(1, 3, 64, 64, device="cuda") * 50
    with torch.no_grad():
        features = model(start.to(torch.bfloat16))
        content = {name: features[name].float().clone() for name in CONTENT_LAYERS}
        style = {name: gram(model(start.flip(-1).to(torch.bfloat16))[name]) for name in STYLE_LAYERS}

    def objective(x: torch.Tensor) -> torch.Tensor:
        return total_loss(model(x.to(torch.bfloat16)), x, content, style, 5.0, 100.0, 1e-3)

    image = start.clone().requires_grad_(True)
    iterations = ScaleIterations(objective, image, 8, history=20)
    iterations.step()  # the first call allocates and initialises; later ones are what gets replayed
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(6):
            iterations.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(iterations.losses[:7]).all()


def test_2048_px_fits_and_reports_its_memory(content, style):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    result = run(content, style, Options(size=2048, iterations=6, scales=1), plan=resolve_plan("cuda"))
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"2048 px, the CUDA defaults: peak {peak:.2f} GiB")
    assert result.image.size[0] == 2048
    assert peak < torch.cuda.get_device_properties(0).total_memory / 2**30
