"""CUDA's start, begun while PyTorch imports.

A fresh worker spends seconds in `import torch`, holding the interpreter, and only then starts
CUDA: the driver's initialisation and the GPU's primary context, some 0.3 s on an H100
(`torch.cuda.init()` and the first tensor, measured 2026-11-26). Neither needs PyTorch: they are
three calls into the driver's library, and a call through ctypes releases the interpreter for its
length. So a thread makes them at the very start of the process and the import goes on beside it.

PyTorch then finds the work done: the CUDA runtime uses the device's primary context, the one the
driver API retains here (the runtime and the driver share it; retaining it twice only counts), and
the driver initialises once per process. Whatever the thread meets (no driver library on a CPU
machine, no visible GPU, a driver error) it records as its outcome and stops: PyTorch then starts
CUDA itself, as it would without this, or runs on the CPU.
"""

from __future__ import annotations

import ctypes
import threading
import time

DRIVER_LIBRARY = "libcuda.so.1"  # the soname that the CUDA runtime itself opens
CUDA_SUCCESS = 0
DEVICE = 0  # the engine's "cuda" is the first visible device (CUDA_VISIBLE_DEVICES applies here too)


class DriverError(Exception):
    pass


class CudaStart:
    """A daemon thread that initialises the driver and retains device 0's primary context.

    `outcome` is "running", then "ready" or why not; `seconds` is set when the thread ends, and
    `context` (the CUcontext's address) once it is retained. The context is never released: the
    worker runs one job and exits, and PyTorch uses the context."""

    def __init__(self, library: str = DRIVER_LIBRARY) -> None:
        self.library = library
        self.outcome = "running"
        self.seconds: float | None = None
        self.context: int | None = None
        self._thread = threading.Thread(target=self._start, name="cuda-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        started = time.perf_counter()
        try:
            driver = ctypes.CDLL(self.library)
            _check(driver, driver.cuInit(0), "cuInit")
            device = ctypes.c_int()
            _check(driver, driver.cuDeviceGet(ctypes.byref(device), DEVICE), "cuDeviceGet")
            context = ctypes.c_void_p()
            _check(driver, driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
            self.context = context.value
            self.outcome = "ready"
        except OSError:  # no driver library: a CPU machine
            self.outcome = f"no CUDA driver ({self.library} not found)"
        except DriverError as failure:
            self.outcome = str(failure)
        except Exception as failure:  # never the job's concern: PyTorch starts CUDA itself
            self.outcome = f"failed ({type(failure).__name__}: {failure})"
        finally:
            self.seconds = round(time.perf_counter() - started, 3)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def _check(driver: ctypes.CDLL, result: int, call: str) -> None:
    """A CUresult other than CUDA_SUCCESS as a DriverError that names it (CUDA_ERROR_NO_DEVICE...)."""
    if result == CUDA_SUCCESS:
        return
    name = ctypes.c_char_p()
    try:
        named = driver.cuGetErrorName(result, ctypes.byref(name)) == CUDA_SUCCESS and name.value
    except AttributeError:  # a driver without cuGetErrorName
        named = None
    raise DriverError(f"{call} returned {result}" + (f" ({named.decode()})" if named else ""))
