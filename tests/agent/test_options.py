import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from styletransfer.device import applied, cpu_has_native_bf16, pick_device, plan_for, resolve_plan
from styletransfer.options import MAX_SIZE, PRESETS, Options, preset


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 0),
        ("size", MAX_SIZE + 1),
        ("iterations", 0),
        ("scales", 9),
        ("strength", 1.5),
        ("strength", float("nan")),
        ("style_weight", -1.0),
        ("style_scale", 0.0),
        ("init", "zeros"),
        ("optimizer", "sgd"),
        ("style_blend", (0.0, 0.0)),
        ("size", 512.5),
    ],
)
def test_out_of_bounds_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        Options(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("precision", "fp16"),
        ("capture", "jit"),
    ],
)
def test_out_of_bounds_plans_are_refused(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        resolve_plan("cpu", **{field: value})


@given(st.integers(64, MAX_SIZE), st.integers(1, 8))
def test_scale_sizes_climb_to_the_requested_size(size, scales):
    sizes = Options(size=size, scales=scales).scale_sizes()
    assert sizes[-1] == size
    assert sizes == sorted(set(sizes))
    assert sizes[0] >= 64
    assert all(b / a <= 2**0.5 + 0.02 for a, b in itertools.pairwise(sizes))


def test_presets_run_from_fast_to_fine():
    cost = {name: sum(s * s for s in p.scale_sizes()) * p.iterations for name, p in PRESETS.items()}
    assert cost["preview"] < cost["standard"] < cost["high"]
    assert PRESETS["high"].size >= 1024
    assert preset("preview", size=128).size == 128
    with pytest.raises(ValueError, match="unknown preset"):
        preset("ultra")


def test_auto_preset_follows_the_device(monkeypatch):
    monkeypatch.setattr("styletransfer.device.cuda_available", lambda: True)
    assert preset("auto") == PRESETS["standard"]
    monkeypatch.setattr("styletransfer.device.cuda_available", lambda: False)
    assert preset("auto") == PRESETS["preview"]


def test_plans_for_cuda_and_cpu():
    cuda = plan_for(torch.device("cuda"))
    assert cuda.channels_last
    assert cuda.tf32
    assert cuda.deterministic
    assert not cuda.cudnn_benchmark
    assert plan_for(torch.device("cuda"), deterministic=False).cudnn_benchmark
    cpu = plan_for(torch.device("cpu"))
    assert not (cpu.channels_last)
    assert not (cpu.tf32)
    assert not (cpu.cudnn_benchmark)
    assert plan_for(torch.device("cpu"), channels_last=True).channels_last
    assert not plan_for(torch.device("cuda"), tf32=False).tf32
    assert not plan_for(torch.device("cpu"), tf32=True).tf32  # no tensor cores to use


@pytest.mark.parametrize(("precision", "tf32_grams"), [("fp32", False), ("bf16", True), ("auto", True)])
def test_applied_settings_use_tf32_for_grams_only_where_exact_and_are_restored(precision, tf32_grams):
    """The Grams are the objective's matmuls: TF32 rounds fp32 features, but holds bf16 ones exactly."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = not tf32_grams
    try:
        cuda = torch.device("cuda")
        with applied(plan_for(cuda, precision, deterministic=False)):
            assert torch.backends.cudnn.allow_tf32
            assert torch.backends.cuda.matmul.allow_tf32 == tf32_grams
            assert torch.backends.cudnn.benchmark
        assert torch.backends.cuda.matmul.allow_tf32 == (not tf32_grams)  # restored
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = before


def test_lbfgs_products_stay_fp32_whatever_the_job_allows():
    from styletransfer.lbfgs import LBFGS

    seen = []
    x = torch.zeros(4)
    optimiser = LBFGS(x, history=2)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        original = optimiser._step
        optimiser._step = lambda *args: seen.append(torch.backends.cuda.matmul.allow_tf32) or original(*args)
        optimiser.step(x, torch.ones(4))
        assert seen == [False]
        assert torch.backends.cuda.matmul.allow_tf32  # restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="quantum"):
        pick_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            pick_device("cuda")


def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it_natively():
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
        flags = set(next(line for line in cpuinfo if line.startswith("flags")).split(":", 1)[1].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert cpu_has_native_bf16() == native
    assert plan_for(torch.device("cpu")).precision == ("bf16" if native else "fp32")
    assert plan_for(torch.device("cuda")).precision == "bf16"  # measured fastest on an H100
    assert plan_for(torch.device("cpu"), "fp32").precision == "fp32"
    assert plan_for(torch.device("cuda"), "bf16").precision == "bf16"
