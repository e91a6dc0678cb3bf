"""CUDA's start while PyTorch imports (stylize_worker.cuda_start), against a stand-in for the CUDA
driver's library (fake_cuda: it records the calls and can hold cuInit). The worker's use of it, in
a real worker process, is in test_worker."""

from __future__ import annotations

import ctypes
import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stylize_worker.cuda_start import CudaStart


@pytest.fixture
def driver(fake_cuda_driver: Path) -> Iterator[ctypes.CDLL]:
    """The stand-in as this test sees it: the same loaded library as the thread's (same path)."""
    loaded = ctypes.CDLL(str(fake_cuda_driver))
    loaded.fake_calls.restype = ctypes.c_char_p
    loaded.fake_configure(0, 0)
    yield loaded
    loaded.fake_release()  # never leave a thread waiting in cuInit


def finished(start: CudaStart) -> CudaStart:
    start.join(timeout=30)
    assert start.outcome != "running", "the thread did not finish"
    return start


def test_it_initialises_the_driver_and_retains_the_first_devices_primary_context(
    driver: ctypes.CDLL, fake_cuda_driver: Path
):
    start = finished(CudaStart(library=str(fake_cuda_driver)))

    assert start.outcome == "ready"
    # device 0 is the engine's "cuda"; the context retained is that device's (7 from cuDeviceGet)
    assert driver.fake_calls().decode() == "cuInit(0) cuDeviceGet(0) cuDevicePrimaryCtxRetain(7)"
    assert start.context == 0x1000  # the context the driver handed back
    assert start.seconds is not None
    assert start.seconds >= 0


def test_python_goes_on_while_the_driver_works(driver: ctypes.CDLL, fake_cuda_driver: Path):
    """The point of it: the thread's driver call releases the interpreter, so an import can run
    beside it. Here cuInit waits until this thread, running Python meanwhile, lets it go: were
    the interpreter held, this thread could not run until cuInit gave up (10 s), and then would
    not find it waiting."""
    driver.fake_configure(1, 0)
    start = CudaStart(library=str(fake_cuda_driver))
    deadline = time.monotonic() + 30
    while not driver.fake_waiting():
        assert time.monotonic() < deadline, "the thread was never seen waiting in cuInit: was the interpreter held?"
        time.sleep(0.001)

    sys.modules.pop("colorsys", None)
    assert importlib.import_module("colorsys").rgb_to_hsv(1, 0, 0) == (0, 1, 1)  # an import, meanwhile
    assert start.outcome == "running"
    driver.fake_release()

    assert finished(start).outcome == "ready"
    assert "gave up" not in driver.fake_calls().decode()


def test_a_driver_error_is_named_and_ends_the_start(driver: ctypes.CDLL, fake_cuda_driver: Path):
    driver.fake_configure(0, 100)  # what cuInit returns where no GPU is visible

    start = finished(CudaStart(library=str(fake_cuda_driver)))

    assert start.outcome == "cuInit returned 100 (CUDA_ERROR_NO_DEVICE)"
    assert start.context is None
    assert driver.fake_calls().decode() == "cuInit(0) "  # no context asked of a driver that failed


def test_an_error_the_driver_cannot_name_is_given_by_number(driver: ctypes.CDLL, fake_cuda_driver: Path):
    driver.fake_configure(0, 999)

    assert finished(CudaStart(library=str(fake_cuda_driver))).outcome == "cuInit returned 999"


def test_without_a_driver_it_says_so_and_nothing_else_happens(tmp_path: Path):
    missing = tmp_path / "libcuda.so.1"

    start = finished(CudaStart(library=str(missing)))

    assert start.outcome == f"no CUDA driver ({missing} not found)"
