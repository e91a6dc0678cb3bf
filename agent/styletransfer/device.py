"""Which device runs the work, and the settings that make convolutions fast there.

The decisions are pure functions of the device so that the CUDA branch is tested on CPU too.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


def cuda_available() -> bool:
    return torch.cuda.is_available()


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' means CUDA when present, else CPU. A device that is asked for but absent is an error."""
    if requested == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(f"unknown device {requested!r}") from error
    if device.type == "cuda" and not cuda_available():
        raise ValueError(f"device {requested!r} was asked for but this machine has no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, not {requested!r}")
    return device


@dataclass(frozen=True)
class DeviceSettings:
    channels_last: bool  # NHWC: faster cuDNN/tensor-core convolutions; measured no gain on CPU
    allow_tf32: bool  # TF32 tensor cores (Ampere and newer) for fp32 convolutions
    # TF32 for the objective's matrix products, the Gram matrices, where it is exact: on bf16
    # features (bf16's 8 significant bits fit in TF32's 11, and the sums stay fp32). On fp32
    # features it would round them; emulated on a CPU that cost up to 20% of final loss
    # (docs/benchmarks.md). Never for the L-BFGS history products (lbfgs.py keeps those fp32).
    tf32_matmul: bool
    cudnn_benchmark: bool  # autotune convolution algorithms; off when results must be reproducible
    deterministic: bool


def settings_for(
    device: torch.device,
    channels_last: bool | None = None,
    deterministic: bool = True,
    tf32: bool | None = None,
    precision: str = "auto",
) -> DeviceSettings:
    """The settings for `device`; None for channels_last or tf32 means on for CUDA, off for the CPU."""
    on_cuda = device.type == "cuda"
    return DeviceSettings(
        channels_last=on_cuda if channels_last is None else channels_last,
        allow_tf32=on_cuda and (tf32 is None or tf32),
        tf32_matmul=on_cuda and resolve_precision(precision, device) == "bf16",
        cudnn_benchmark=on_cuda and not deterministic,
        deterministic=deterministic,
    )


def configure_cpu_threads() -> int:
    """Use every core this process may run on (torch's default counts physical cores only)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


@contextlib.contextmanager
def applied(device: torch.device, settings: DeviceSettings) -> Iterator[None]:
    """Apply the settings for the duration of one job and restore the global flags afterwards."""
    saved = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        if device.type == "cpu":
            configure_cpu_threads()
        torch.backends.cudnn.allow_tf32 = settings.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = settings.tf32_matmul
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
        torch.backends.cudnn.deterministic = settings.deterministic
        yield
    finally:
        (
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
        ) = saved


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX). Elsewhere oneDNN emulates
    bf16 and it can be slower than fp32. Read from /proc/cpuinfo: elsewhere than Linux, no."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    """'auto' is bf16 on CUDA and on a CPU that computes it natively, fp32 elsewhere. On an H100
    bf16 with the weights cast once made an iteration the fastest (docs/benchmarks.md); on a CPU
    with native bf16 the preview preset measured 1.5x faster than fp32 at the same loss; where a
    CPU only emulates bf16 it can be slower than fp32."""
    if requested != "auto":
        return requested
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def resolve_capture(requested: str, device: torch.device) -> str:
    """'auto' replays each iteration as a CUDA graph on CUDA, where eager iterations are bound by
    kernel launches, and runs eagerly on a CPU (torch.compile pays only for long runs of one size)."""
    if requested != "auto":
        return requested
    return "cuda_graph" if device.type == "cuda" else "none"


# Pixels per chunk of the L-BFGS history products on CUDA: at 512 px (590k values) 288 small
# products, more than an H100 has multiprocessors (132), each reading 40 x 2048 values.
HISTORY_CHUNK_ON_CUDA = 2048


def resolve_history_chunk(requested: int | None, device: torch.device) -> int | None:
    """Pixels per chunk of the L-BFGS history products, None for one product. On CUDA one product
    (2m rows by 3 columns over every pixel) ran as one fp32 GEMM at a fifth of memory speed (153 us
    at 512 px on an H100, where reading its operands takes about 30 us): a GEMM that long and that
    thin gets few thread blocks. In chunks it is a batch of small products, one per block. A CPU
    runs one product at memory speed already. 0 asks for one product anywhere."""
    if requested is None:
        return HISTORY_CHUNK_ON_CUDA if device.type == "cuda" else None
    return requested or None


def network_dtype(precision: str) -> torch.dtype:
    """The dtype of the network's weights and activations: bf16 is cast once, weights included, not
    per call by autocast (which copies every weight each iteration); fp16 would overflow Grams."""
    return torch.bfloat16 if precision == "bf16" else torch.float32
