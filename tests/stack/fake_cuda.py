"""A stand-in for the CUDA driver's library (libcuda.so.1), for stylize_worker.cuda_start's tests:
a small C library, compiled with the machine's C compiler, that exports the driver calls the
worker's thread makes, records them (in memory, and in the file FAKE_CUDA_CALLS names, for a
worker process), and can hold cuInit until the test lets it go (or, for a worker process, for
FAKE_CUDA_INIT_MS milliseconds, or abort the process there with FAKE_CUDA_ABORT set). The real driver is outside this
process's boundary and this machine has none; on a GPU, benchmarks/bench_job.py times the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

SONAME = "libcuda.so.1"  # the name the worker opens: a directory holding this on LD_LIBRARY_PATH stands in

SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int hold, waiting, init_result;
static char calls[512];

static void record(const char *call) {
    pthread_mutex_lock(&lock);
    strncat(calls, call, sizeof calls - strlen(calls) - 1);
    const char *path = getenv("FAKE_CUDA_CALLS");
    FILE *log = path ? fopen(path, "a") : NULL;
    if (log) { fputs(call, log); fclose(log); }
    pthread_mutex_unlock(&lock);
}

void fake_configure(int hold_init, int result) {
    pthread_mutex_lock(&lock);
    hold = hold_init; waiting = 0; init_result = result; calls[0] = 0;
    pthread_mutex_unlock(&lock);
}
int fake_waiting(void) { pthread_mutex_lock(&lock); int w = waiting; pthread_mutex_unlock(&lock); return w; }
void fake_release(void) {
    pthread_mutex_lock(&lock); hold = 0; pthread_cond_broadcast(&changed); pthread_mutex_unlock(&lock);
}
const char *fake_calls(void) { return calls; }

int cuInit(unsigned int flags) {
    char call[32];
    snprintf(call, sizeof call, "cuInit(%u) ", flags);
    record(call);
    const char *delay = getenv("FAKE_CUDA_INIT_MS"); /* a slow driver, for a worker process */
    if (delay) usleep(1000 * atoi(delay));
    if (getenv("FAKE_CUDA_ABORT")) abort(); /* a driver that brings the process down */
    struct timespec give_up;
    clock_gettime(CLOCK_REALTIME, &give_up);
    give_up.tv_sec += 10; /* a held interpreter must fail the test, not hang it */
    pthread_mutex_lock(&lock);
    waiting = 1;
    while (hold && pthread_cond_timedwait(&changed, &lock, &give_up) == 0) {}
    if (hold) strncat(calls, "(held until it gave up) ", sizeof calls - strlen(calls) - 1);
    waiting = 0;
    pthread_mutex_unlock(&lock);
    return init_result;
}
int cuDeviceGet(int *device, int ordinal) {
    char call[32];
    snprintf(call, sizeof call, "cuDeviceGet(%d) ", ordinal);
    record(call);
    *device = 7 + ordinal;
    return 0;
}
int cuDevicePrimaryCtxRetain(void **context, int device) {
    char call[48];
    snprintf(call, sizeof call, "cuDevicePrimaryCtxRetain(%d)", device);
    record(call);
    *context = (void *)0x1000;
    return 0;
}
int cuGetErrorName(int error, const char **name) {
    if (error != 100) return 1; /* CUDA_ERROR_INVALID_VALUE: a code this stand-in cannot name */
    *name = "CUDA_ERROR_NO_DEVICE";
    return 0;
}
"""


def in_front(driver: Path, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with `driver` (built by `build`) where a process looks for libcuda.so.1 first."""
    search = os.pathsep.join(filter(None, [str(driver.parent), env.get("LD_LIBRARY_PATH")]))
    return {**env, "LD_LIBRARY_PATH": search}


def build(directory: Path) -> Path:
    """Compile the stand-in as `directory`/libcuda.so.1."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "the stand-in CUDA driver needs a C compiler (cc or gcc)"
    source = directory / "fake_cuda.c"
    source.write_text(SOURCE)
    library = directory / SONAME
    subprocess.run([compiler, "-shared", "-fPIC", "-pthread", "-o", library, source], check=True)
    return library
