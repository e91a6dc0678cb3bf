"""One scale's iterations, run so that the GPU never waits for the host.

An iteration is the objective, its gradient and an optimiser step; it reads and writes tensors at
fixed addresses and leaves its loss in a device buffer, which the host reads a batch at a time for
progress reports. So the same iteration runs three ways (`Options.capture`):

- "auto": "cuda_graph" on CUDA, "none" elsewhere (device.resolve_capture);
- "none": eagerly, kernel by kernel;
- "compile": the objective and its gradient compiled by torch.compile (fused kernels, paid for by
  a compilation per image size);
- "cuda_graph": run a few times eagerly (cuDNN and autograd settle), then captured once as a CUDA
  graph and replayed, which launches the whole iteration as one unit.

A scale can also be prepared before its start image exists (`prepare`, then `begin`): the warm-up
runs on a probe image of the same size, the capture follows, and every state is put back. The
engine does that for the next scale while the GPU still runs this one (`Options.prepare_ahead`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Literal

import torch

from .device import resolve_capture, resolve_history_chunk
from .lbfgs import LBFGS
from .options import CAPTURES, HISTORY

Capture = Literal["auto", "none", "compile", "cuda_graph"]  # one of CAPTURES

MAX_MOVE = 255.0  # most an L-BFGS step may move a pixel, in caffe units: the whole 0..255 range
WARMUP = 3  # eager iterations before a CUDA graph is captured
REPORT_EVERY_ON_GPU = 20  # iterations between the host's reads of the losses (each read waits for the GPU)

Objective = Callable[[torch.Tensor], torch.Tensor]


def check_capture(capture: str, device: torch.device) -> None:
    if capture not in CAPTURES:
        raise ValueError(f"capture must be one of {', '.join(CAPTURES)}, not {capture!r}")
    if capture == "cuda_graph" and device.type != "cuda":
        raise ValueError(f"capture 'cuda_graph' needs a CUDA device, and this job runs on {device}")


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
    """Optimises `image` (a leaf tensor that requires grad) in place for `iterations` steps."""

    def __init__(
        self,
        objective: Objective,
        image: torch.Tensor,
        iterations: int,
        optimizer: Literal["lbfgs", "adam"] = "lbfgs",
        learning_rate: float = 10.0,
        capture: Capture = "none",
        history: int = HISTORY,
        history_chunk: int | None = None,
    ) -> None:
        check_capture(capture, image.device)
        capture = resolve_capture(capture, image.device)
        self.image = image
        self.iterations = iterations
        self.capture = capture
        self.objective = torch.compile(objective, dynamic=False, fullgraph=True) if capture == "compile" else objective
        self.losses = torch.zeros(iterations, device=image.device)
        self.count = torch.zeros((), dtype=torch.long, device=image.device)
        self.lbfgs: LBFGS | None = None
        self.adam: torch.optim.Adam | None = None
        if optimizer == "lbfgs":
            chunk = resolve_history_chunk(history_chunk, image.device)
            self.lbfgs = LBFGS(image.detach(), history=history, max_move=MAX_MOVE, chunk=chunk)
        else:
            self.adam = torch.optim.Adam([image], lr=learning_rate, capturable=capture == "cuda_graph")
        self.report_every = 1 if image.device.type == "cpu" else REPORT_EVERY_ON_GPU
        self._prepared: Callable[[], None] | None = None  # the launch `prepare` made ready
        self._side: torch.cuda.Stream | None = None  # where `prepare` ran on CUDA; `join` waits for it

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

    def prepare(self, probe: torch.Tensor) -> None:
        """Does what comes before the first iteration without the start image: WARMUP iterations
        from `probe` (an image of the same shape), the capture when capturing, then every state put
        back as it was. Nothing here waits for the device, so it can run while the GPU is still
        busy with earlier work. On CUDA it runs on a side stream that waits for the current
        stream as it is now; `join` makes a stream wait for it, `begin` joins and sets the start
        image; `run` then runs every iteration."""
        with torch.no_grad():
            self.image.copy_(probe)
        if self.image.device.type == "cuda":
            self._side = torch.cuda.Stream(self.image.device)
            self._side.wait_stream(torch.cuda.current_stream(self.image.device))
        # Elsewhere the warm-up runs in place and is undone all the same (what the CPU tests compare).
        with torch.cuda.stream(self._side) if self._side is not None else contextlib.nullcontext():
            for _ in range(WARMUP):
                self.step()
            launch = self._capture() if self.capture == "cuda_graph" else self.step
            self.reset()
        self._prepared = launch

    def join(self) -> None:
        """Makes the current stream wait for everything `prepare` queued, and for what its own
        stream had queued before it (on CUDA): what the preparation made may then be read there.
        Elsewhere there is nothing to wait for."""
        if self._prepared is None:
            raise RuntimeError("join() and begin() come after prepare()")
        if self._side is not None:
            torch.cuda.current_stream(self.image.device).wait_stream(self._side)

    def begin(self, start: torch.Tensor) -> None:
        """Sets the start image of a scale made ready by `prepare` (after `join`: the warm-up wrote
        the image on the preparation's stream)."""
        self.join()
        with torch.no_grad():
            self.image.copy_(start)

    def reset(self) -> None:
        """Every state the iterations change, in place, back to where it started (the image aside):
        a captured graph keeps reading and writing the same tensors."""
        self.losses.zero_()
        self.count.zero_()
        if self.lbfgs is not None:
            self.lbfgs.reset()
        else:
            assert self.adam is not None
            for state in self.adam.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()

    def run(
        self, on_losses: Callable[[list[float]], None], meanwhile: Callable[[], None] | None = None
    ) -> float | None:
        """Runs every iteration; `on_losses` gets each iteration's loss, in order, a batch at a time.

        `meanwhile`, if given, is called once: after the first batch's read, once every other
        iteration is launched and before their losses are read, so on a GPU it runs on the host
        while the device works through them. Returns, on CUDA, the device's seconds for the
        iterations after the first read (the host's clock would count `meanwhile` in); else None."""
        done, launch = 0, self.step
        if self._prepared is not None:
            launch = self._prepared
        elif self.capture == "cuda_graph" and self.iterations > WARMUP:  # else too short to pay: eager
            done, launch = WARMUP, self._captured(warmup=WARMUP)
        reported = 0

        def launch_to(upto: int) -> None:
            nonlocal done
            while done < upto:
                launch()
                done += 1

        def read() -> None:
            nonlocal reported
            if done > reported:
                on_losses(self.losses[reported:done].tolist())
                reported = done

        launch_to(min(self.iterations, max(done, self.report_every)))
        read()
        steady_start = self._mark() if done < self.iterations else None
        steady_end = None
        if meanwhile is not None:
            launch_to(self.iterations)
            steady_end = self._mark()
            meanwhile()
            read()
        while done < self.iterations:
            launch_to(min(self.iterations, done + self.report_every))
            if done == self.iterations:
                steady_end = self._mark()
            read()
        if steady_start is None or steady_end is None:
            return None
        return steady_start.elapsed_time(steady_end) / 1000  # both passed: the last read waited

    def _mark(self) -> torch.cuda.Event | None:
        """A timing event recorded on the current stream, on CUDA."""
        if self.image.device.type != "cuda":
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

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

    def _capture(self) -> Callable[[], None]:
        """Captures one iteration on the current stream, where the warm-up ran: returns its replay.
        Unlike `torch.cuda.graph`, which first waits for the whole device and empties the
        allocator's cache (to give the graph more room), this waits for nothing, so the host can
        capture while the GPU still runs the previous scale."""
        graph = torch.cuda.CUDAGraph()
        with collector_paused():
            graph.capture_begin()
            try:
                self.step()  # recorded, not run
            finally:
                graph.capture_end()
        return graph.replay
