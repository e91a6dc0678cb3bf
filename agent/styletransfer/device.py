"""How a job runs: its device and every choice made for it there, settled once into a `Plan`.

`Options` say what a result should be; a `Plan` says how to compute it. `resolve_plan` picks the
device and settles every "auto" for it, once per job; the engine and its iterations then read
only the plan. `plan_for` is the same decision as a pure function of the device, so the CUDA
branch is tested on a CPU too. Why each default is what it is: docs/engine.md, "How it runs".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from .options import CAPTURES, PRECISIONS

Precision = Literal["fp32", "bf16"]
Capture = Literal["none", "compile", "cuda_graph"]


@dataclass(frozen=True)
class Plan:
    """How a job runs, every choice settled. Made by `plan_for` / `resolve_plan`; a benchmark may
    `replace` a field to time another way."""

    device: torch.device
    precision: Precision  # of the network's weights and activations; Grams, losses, optimiser: fp32
    capture: Capture  # how each iteration is launched (iterations.py)
    channels_last: bool  # NHWC memory layout for the network
    tf32: bool  # TF32 tensor cores for fp32 convolutions
    deterministic: bool  # False lets cuDNN autotune each new image size: faster, not repeatable

    def __post_init__(self) -> None:
        for name, allowed in (("precision", PRECISIONS), ("capture", CAPTURES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
            if value == "auto":
                raise ValueError(f"a plan's {name} is settled, not 'auto' (plan_for settles it)")
        check_capture(self.capture, self.device)

    def replace(self, **changes: object) -> Plan:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def dtype(self) -> torch.dtype:
        """The network's dtype: bf16 is cast once, weights included, not per call by autocast
        (which copies every weight each iteration); fp16 would overflow the Gram matrices."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def tf32_grams(self) -> bool:
        """TF32 for the objective's matrix products, the Gram matrices, only where it is exact: on
        bf16 features (bf16's 8 significant bits fit in TF32's 11, and the sums stay fp32). On fp32
        features it would round them. Never for the L-BFGS history products (lbfgs.py keeps those
        fp32)."""
        return self.device.type == "cuda" and self.precision == "bf16"

    @property
    def cudnn_benchmark(self) -> bool:
        """cuDNN autotuning, only when results need not repeat: it costs seconds per image size."""
        return self.device.type == "cuda" and not self.deterministic


def resolve_plan(
    device: str = "auto",
    precision: str = "auto",
    capture: str = "auto",
    *,
    channels_last: bool | None = None,
    tf32: bool | None = None,
    deterministic: bool = True,
) -> Plan:
    """The plan for a job on `device` ("auto": CUDA when present, else the CPU): see `plan_for`."""
    return plan_for(
        pick_device(device),
        precision,
        capture,
        channels_last=channels_last,
        tf32=tf32,
        deterministic=deterministic,
    )


def plan_for(
    device: torch.device,
    precision: str = "auto",
    capture: str = "auto",
    *,
    channels_last: bool | None = None,
    tf32: bool | None = None,
    deterministic: bool = True,
) -> Plan:
    """Every choice for `device`, "auto" and None settled as measured best there
    (docs/performance.md; docs/history/benchmarks-2026-11.md, "The GPU fast path"; docs/engine.md, "How it runs"):

    - precision: bf16 on CUDA (fastest per iteration at the same quality) and on a CPU that
      computes it natively (AVX512-BF16 or AMX); elsewhere a CPU emulates bf16, slower than fp32;
    - capture: a CUDA graph on CUDA, where eager iterations are bound by kernel launches; eagerly on
      a CPU (torch.compile pays only for long runs of one size);
    - channels_last and tf32 (for fp32 convolutions): on CUDA; channels-last measured no faster on
      a CPU, which has no tensor cores;
    - deterministic: yes unless asked otherwise (cuDNN's autotuning costs more than a whole job).
    """
    on_cuda = device.type == "cuda"
    if precision == "auto":
        precision = "bf16" if on_cuda or cpu_has_native_bf16() else "fp32"
    if capture == "auto":
        capture = "cuda_graph" if on_cuda else "none"
    return Plan(
        device=device,
        precision=precision,  # type: ignore[arg-type]
        capture=capture,  # type: ignore[arg-type]
        channels_last=on_cuda if channels_last is None else channels_last,
        tf32=on_cuda and (tf32 is None or tf32),
        deterministic=deterministic,
    )


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


def check_capture(capture: str, device: torch.device) -> None:
    if capture not in CAPTURES:
        raise ValueError(f"capture must be one of {', '.join(CAPTURES)}, not {capture!r}")
    if capture == "cuda_graph" and device.type != "cuda":
        raise ValueError(f"capture 'cuda_graph' needs a CUDA device, and this job runs on {device}")


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
def applied(plan: Plan) -> Iterator[None]:
    """The plan's global settings for the duration of one job, restored afterwards."""
    saved = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    try:
        if plan.device.type == "cpu":
            configure_cpu_threads()
        torch.backends.cudnn.allow_tf32 = plan.tf32
        torch.backends.cuda.matmul.allow_tf32 = plan.tf32_grams
        torch.backends.cudnn.benchmark = plan.cudnn_benchmark
        torch.backends.cudnn.deterministic = plan.deterministic
        yield
    finally:
        (
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
        ) = saved
