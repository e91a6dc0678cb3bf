"""One scale's iterations, run so that the GPU never waits for the host.

An iteration is the objective, its gradient and an optimiser step; it reads and writes tensors at
fixed addresses and leaves its loss in a device buffer, which the host reads a batch at a time for
progress reports. So the same iteration runs three ways (`Plan.capture`, settled in device.py):

- "none": eagerly, kernel by kernel;
- "compile": the objective and its gradient compiled by torch.compile (fused kernels, paid for by
  a compilation per image size);
- "cuda_graph": run a few times eagerly (cuDNN and autograd settle), then captured once as a CUDA
  graph and replayed, which launches the whole iteration as one unit.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Literal

import torch

from .device import Capture, check_capture
from .lbfgs import LBFGS
from .options import HISTORY

MAX_MOVE = 255.0  # most an L-BFGS step may move a pixel, in caffe units: the whole 0..255 range
WARMUP = 3  # eager iterations before a CUDA graph is captured
REPORT_EVERY_ON_GPU = 20  # iterations between the host's reads of the losses (each read waits for the GPU)

Objective = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off, for a capture. A CUDA graph that only the collector
    can free (one left in a reference cycle) is destroyed whenever the collector runs, and a
    capture allocates enough objects to run it; destroying a graph while a stream captures is not
    allowed, and it invalidates the capture (pytorch/pytorch#161037). Found later, outside."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ScaleIterations:
    """Optimises `image` (a leaf tensor that requires grad) in place for `iterations` steps, launched
    as `capture` says (as a `device.Plan` settles it)."""

    def __init__(
        self,
        objective: Objective,
        image: torch.Tensor,
        iterations: int,
        optimizer: Literal["lbfgs", "adam"] = "lbfgs",
        learning_rate: float = 10.0,
        capture: Capture = "none",
        history: int = HISTORY,
    ) -> None:
        check_capture(capture, image.device)
        if capture == "auto":
            raise ValueError("capture 'auto' is settled by the job's plan (device.plan_for), not here")
        self.image = image
        self.iterations = iterations
        self.capture = capture
        self.objective = torch.compile(objective, dynamic=False, fullgraph=True) if capture == "compile" else objective
        self.losses = torch.zeros(iterations, device=image.device)
        self.count = torch.zeros((), dtype=torch.long, device=image.device)
        self.lbfgs: LBFGS | None = None
        self.adam: torch.optim.Adam | None = None
        if optimizer == "lbfgs":
            self.lbfgs = LBFGS(image.detach(), history=history, max_move=MAX_MOVE)
        else:
            self.adam = torch.optim.Adam([image], lr=learning_rate, capturable=capture == "cuda_graph")
        self.report_every = 1 if image.device.type == "cpu" else REPORT_EVERY_ON_GPU

    def step(self) -> None:
        """One iteration, with no read back to the host (so it can be captured)."""
        loss = self.objective(self.image)
        (grad,) = torch.autograd.grad(loss, self.image)
        if self.lbfgs is not None:
            self.lbfgs.step(self.image.detach(), grad)
        else:
            assert self.adam is not None
            self.image.grad = grad
            self.adam.step()
        self.losses.index_copy_(0, self.count.view(1), loss.detach().float().view(1))
        self.count.add_(1)

    def run(self, on_losses: Callable[[list[float]], None]) -> None:
        """Runs every iteration; `on_losses` gets each iteration's loss, in order, a batch at a time."""
        done, launch = 0, self.step
        if self.capture == "cuda_graph" and self.iterations > WARMUP:  # else too short to pay: eager
            done, launch = WARMUP, self._captured(warmup=WARMUP)
        reported = 0
        while done < self.iterations:
            upto = min(self.iterations, max(done, reported + self.report_every))
            while done < upto:
                launch()
                done += 1
            on_losses(self.losses[reported:done].tolist())
            reported = done

    def _captured(self, warmup: int) -> Callable[[], None]:
        """Runs `warmup` iterations eagerly, then captures one as a CUDA graph: returns its replay."""
        device = self.image.device
        # Warm-up on a side stream, as torch.cuda.graphs asks: nothing stray is captured.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # Captured on the warm-up's stream: the BLAS handles made there are reused, not created
        # mid-capture (what torch.cuda.make_graphed_callables does too).
        with collector_paused(), torch.cuda.graph(graph, stream=side):
            self.step()  # recorded, not run
        return graph.replay
