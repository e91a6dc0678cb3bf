"""The CUDA fast paths on a real GPU. On a machine without CUDA these tests are skipped (the CPU
side of every fast path is tested in test_engine.py, test_iterations.py and test_lbfgs.py); on the
GPU machine they run in `benchmarks/gpu_check.sh` (see docs/benchmarks.md)."""

import pytest
import torch
from styletransfer import Options, run
from styletransfer.images import resized, to_tensor
from styletransfer.iterations import ScaleIterations
from styletransfer.losses import CONTENT_LAYERS, STYLE_LAYERS, gram, total_loss
from styletransfer.reference import reference_stylize
from styletransfer.vgg import VGGFeatures, to_caffe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = Options(size=64, iterations=10, scales=1, device="cuda")


def reference_loss_after(content, style, iterations: int) -> float:
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        content_caffe = to_caffe(to_tensor(resized(content, 64))).cuda()
        style_caffe = to_caffe(to_tensor(resized(style, 64))).cuda()
        return reference_stylize(content_caffe, style_caffe, iterations)[1]


@pytest.mark.parametrize(
    ("fast_path", "tolerance"),
    [
        ({"tf32": False, "channels_last": False}, 0.01),
        ({}, 0.03),  # TF32 convolutions, channels-last: the CUDA defaults
        ({"precision": "bf16"}, 0.05),
        ({"capture": "cuda_graph"}, 0.03),
        ({"capture": "cuda_graph", "precision": "bf16"}, 0.05),
        ({"capture": "compile"}, 0.03),
    ],
    ids=["fp32", "tf32", "bf16", "tf32_graph", "bf16_graph", "compile"],
)
def test_every_cuda_fast_path_matches_the_reference(content, style, fast_path, tolerance):
    engine = run(content, style, TINY.replace(**fast_path))
    assert engine.loss == pytest.approx(reference_loss_after(content, style, TINY.iterations), rel=tolerance)


def test_cuda_graph_replays_what_eager_runs(content, style):
    """Same settings, deterministic cuDNN: the replayed graph computes the eager iterations."""
    eager_losses: list[float] = []
    graph_losses: list[float] = []
    options = TINY.replace(iterations=30)
    eager = run(content, style, options, lambda p: eager_losses.append(p.loss))
    graph = run(content, style, options.replace(capture="cuda_graph"), lambda p: graph_losses.append(p.loss))
    assert len(graph_losses) == len(eager_losses) == 30
    assert graph_losses[:5] == pytest.approx(eager_losses[:5], rel=1e-4)
    assert graph.loss == pytest.approx(eager.loss, rel=0.02)


def test_an_iteration_never_waits_for_the_gpu():
    """torch's sync debug mode raises on any operation that makes the host wait for the device."""
    model = VGGFeatures(CONTENT_LAYERS + STYLE_LAYERS).cuda()
    start = torch.randn(1, 3, 64, 64, device="cuda") * 50
    with torch.no_grad():
        features = model(start)
        content = {name: features[name].clone() for name in CONTENT_LAYERS}
        style = {name: gram(model(start.flip(-1))[name]) for name in STYLE_LAYERS}
    image = start.clone().requires_grad_(True)
    iterations = ScaleIterations(lambda x: total_loss(model(x), x, content, style, 5.0, 100.0, 1e-3), image, 8)
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
    torch.cuda.reset_peak_memory_stats()
    result = run(content, style, Options(size=2048, iterations=6, scales=1, device="cuda", capture="cuda_graph"))
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"2048 px, CUDA graph: peak {peak:.2f} GiB")
    assert result.image.size[0] == 2048
    assert peak < torch.cuda.get_device_properties(0).total_memory / 2**30
