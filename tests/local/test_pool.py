"""The pool of warm workers on the local stack (`python -m stylelocal`), used by real WebSocket
clients: the first job starts a worker and the next ones reuse it; a burst starts more, up to
MaxWorkers; a worker SIGKILLed mid-job leaves its job to another, a poison job fails after
MaxAttempts while the pool goes on, a SIGTERMed worker hands its job back; an idle worker leaves,
MinWarmWorkers keeps one up; and with no worker able to start a job fails in bounded time, saying
why. The workers are the real `python -m stylize_worker` on this machine's CPU, run by the local
Batch runner that the real scaler submits them to."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack_process import Client, Running, data_url, photo_png, running_stack

JOB_SECONDS = 180  # a 64 px preview job, worker start included, on 2 busy cores, with margin
QUICK = {"preset": "preview", "size": 64}
LONG = {"preset": "preview", "size": 256}  # about 15 s on a quiet 2-core CPU: long enough to interrupt


def submit(client: Client, options: dict[str, Any] = QUICK, private: bool = True) -> dict[str, Any]:
    return client.ask(
        {"action": "TRANSFER_STYLE", "image": data_url(photo_png(96, 64)), "style": "swirls", "isPrivate": private,
         "options": options},
        "TRANSFER_STYLE_ACCEPTED",
    )  # fmt: skip


def result(client: Client, job: dict[str, Any], timeout: float = JOB_SECONDS) -> dict[str, Any]:
    """The job's end (COMPLETED or FAILED) as the client sees it."""
    ends = (f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", f"TRANSFER_STYLE_FAILED::{job['jobId']}")
    return client.wait_for(lambda m: m["event"] in ends, timeout)


def log_lines(stack: Running, message: str) -> list[dict[str, Any]]:
    """The workers' JSON log lines with this message (the stack logs them under the Batch job)."""
    found = []
    for line in stack.log.read_text().splitlines():
        _, bracket, rest = line.partition("] {")
        if bracket and f'"message": "{message}"' in rest:
            found.append(json.loads("{" + rest))
    return found


def job_lines(stack: Running, job_ids: list[str]) -> list[dict[str, Any]]:
    """The workers' lines for these jobs, once every one of them has ended in a line: a worker
    logs its job after answering it, so the client may have the result a moment before the line."""

    def logged() -> list[dict[str, Any]]:
        lines = [line for line in log_lines(stack, "stylize-worker job") if line["jobId"] in job_ids]
        return lines if {line["jobId"] for line in lines} == set(job_ids) else []

    return wait_until(logged, 30, "every job's line logged")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        time.sleep(0.2)
    return value


@pytest.fixture
def opened() -> Iterator[Callable[[Running], Client]]:
    clients: list[Client] = []

    def open_client(stack: Running) -> Client:
        clients.append(Client(stack.ws_url))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


# --- one worker, reused; its faults -----------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    args = ("--parameter", "WorkerIdleSeconds=6", "--parameter", "MaxAttempts=2", "--parameter", "WorkerLeaseSeconds=6")
    with running_stack(tmp_path_factory.mktemp("pool"), args) as running:
        yield running


def test_the_first_job_starts_a_worker_and_the_next_ones_reuse_it(stack: Running, opened) -> None:
    client = opened(stack)
    seconds, workers, job_ids = [], set(), []
    for _ in range(4):
        sent = time.monotonic()
        job = submit(client)
        done = result(client, job)
        assert done["event"].startswith("TRANSFER_STYLE_COMPLETED::"), done
        seconds.append(time.monotonic() - sent)
        workers |= set(stack.pids("stylize_worker"))
        job_ids.append(job["jobId"])
    print("64 px jobs one after another, seconds from sending to result:", [round(s, 1) for s in seconds])
    assert len(workers) == 1, workers  # one process served all four
    served = job_lines(stack, job_ids)
    assert [line["outcome"] for line in served] == ["succeeded"] * 4
    assert len({line["workerId"] for line in served}) == 1
    assert [line["jobsDone"] for line in served] == [1, 2, 3, 4]


def test_a_worker_killed_mid_job_leaves_the_job_to_another_that_finishes_it(stack: Running, opened) -> None:
    client = opened(stack)
    job = submit(client, LONG)
    client.event(f"TRANSFER_STYLE_PROGRESS::{job['jobId']}", JOB_SECONDS)  # a worker is painting it
    [worker] = stack.pids("stylize_worker")

    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    done = result(client, job, timeout=2 * JOB_SECONDS)

    assert done["event"] == f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", done
    print(f"worker killed mid-job: the job finished on another {time.monotonic() - killed:.1f} s later")
    attempts = job_lines(stack, [job["jobId"]])
    assert [(line["attempt"], line["outcome"]) for line in attempts] == [(2, "succeeded")]  # the first never logged
    assert worker not in stack.pids("stylize_worker")
    state = client.ask({"action": "GET_JOB", "jobId": job["jobId"], "jobToken": job["jobToken"]}, "JOB")
    assert state["status"] == "SUCCEEDED"


def test_a_poison_job_fails_after_max_attempts_and_the_pool_goes_on(stack: Running, opened) -> None:
    """A job that kills every worker that takes it (here: the test kills whichever worker starts
    painting it) fails once MaxAttempts (2) workers died of it; the next job is painted."""
    client = opened(stack)
    poison = submit(client, LONG)
    killed: set[int] = set()
    seen = 0
    while True:
        message = client.wait_for(
            lambda m: m["event"] in (f"TRANSFER_STYLE_PROGRESS::{poison['jobId']}",
                                     f"TRANSFER_STYLE_FAILED::{poison['jobId']}"),
            2 * JOB_SECONDS, start=seen,
        )  # fmt: skip
        if message["event"].startswith("TRANSFER_STYLE_FAILED::"):
            break
        [painter] = stack.pids("stylize_worker")
        os.kill(painter, signal.SIGKILL)
        killed.add(painter)
        # what the dead worker sent may still arrive: only a worker started after it paints next
        wait_until(lambda: set(stack.pids("stylize_worker")) - killed, 2 * JOB_SECONDS, "another worker")
        seen = len(client.seen)

    assert len(killed) == 2
    assert "stopped its GPU worker 2 times" in message["data"]["error"]
    after = submit(client)
    assert result(client, after)["event"] == f"TRANSFER_STYLE_COMPLETED::{after['jobId']}"


@pytest.mark.slow  # the worker's own test covers the hand-back (tests/local/test_worker.py)
def test_a_sigtermed_worker_hands_its_job_back_and_another_finishes_it(stack: Running, opened) -> None:
    client = opened(stack)
    job = submit(client, LONG)
    client.event(f"TRANSFER_STYLE_PROGRESS::{job['jobId']}", JOB_SECONDS)
    [worker] = stack.pids("stylize_worker")

    os.kill(worker, signal.SIGTERM)  # as Batch stops a job, or Spot takes its instance back

    wait_until(lambda: worker not in stack.pids("stylize_worker"), 10, "the worker gone within the kill grace")
    done = result(client, job, timeout=2 * JOB_SECONDS)
    assert done["event"] == f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", done

    def outcomes() -> list[tuple[int, str]]:
        return [(line["attempt"], line["outcome"]) for line in log_lines(stack, "stylize-worker job")
                if line["jobId"] == job["jobId"]]  # fmt: skip

    wait_until(lambda: len(outcomes()) >= 2, 30, "both workers' lines logged")
    assert outcomes() == [(1, "handed back"), (1, "succeeded")]  # handing back used no attempt


@pytest.mark.slow  # the worker's own test covers leaving when idle (tests/local/test_worker.py)
def test_an_idle_worker_leaves_and_the_next_job_starts_another(stack: Running, opened) -> None:
    client = opened(stack)
    assert result(client, submit(client))["event"].startswith("TRANSFER_STYLE_COMPLETED::")
    [worker] = stack.pids("stylize_worker")

    wait_until(lambda: not stack.pids("stylize_worker"), 6 + 5 + 20, "the idle worker gone")  # idle, a poll, slack
    left = [line for line in log_lines(stack, "stylize-worker leaving") if line["why"] == "idle for 6 s"]
    assert left

    assert result(client, submit(client))["event"].startswith("TRANSFER_STYLE_COMPLETED::")
    assert stack.pids("stylize_worker") != [worker]


# --- a burst, and MinWarmWorkers ------------------------------------------------------------------


@pytest.mark.slow  # a stack of its own and several workers: about 45 s; the scaler's rule is tested in tests/stack
def test_a_burst_starts_one_worker_per_jobs_per_worker_waiting_up_to_max_workers(tmp_path: Path, opened) -> None:
    args = ("--workers", "2", "--parameter", "MaxWorkers=2", "--parameter", "JobsPerWorker=1")
    with running_stack(tmp_path, args) as stack:
        clients = [opened(stack) for _ in range(3)]
        jobs = [submit(client) for client in clients]
        most = 0
        for client, job in zip(clients, jobs, strict=True):
            done = client.wait_for(lambda m, job=job: m["event"].endswith(f"::{job['jobId']}")
                                   and not m["event"].startswith(("TRANSFER_STYLE_PREVIEW", "TRANSFER_STYLE_PROGRESS")),
                                   JOB_SECONDS)  # fmt: skip
            assert done["event"].startswith("TRANSFER_STYLE_COMPLETED::"), done
            most = max(most, len(stack.pids("stylize_worker")))
        ready = log_lines(stack, "stylize-worker ready")
        assert len(ready) == 2  # three jobs, one per worker wanted, MaxWorkers 2
        served = {line["workerId"] for line in job_lines(stack, [job["jobId"] for job in jobs])}
        assert len(served) == 2


@pytest.mark.slow  # a stack of its own; the worker's own test covers MinWarmWorkers (tests/local/test_worker.py)
def test_min_warm_workers_keeps_a_worker_up_before_and_after_jobs(tmp_path: Path, opened) -> None:
    args = ("--parameter", "MinWarmWorkers=1", "--parameter", "WorkerIdleSeconds=2")
    with running_stack(tmp_path, args) as stack:
        [worker] = wait_until(lambda: stack.pids("stylize_worker"), 60, "a warm worker up with no job")
        wait_until(lambda: log_lines(stack, "stylize-worker ready"), 60, "the warm worker ready")
        client = opened(stack)
        sent = time.monotonic()
        assert result(client, submit(client))["event"].startswith("TRANSFER_STYLE_COMPLETED::")
        print(f"a 64 px job on a warm worker: {time.monotonic() - sent:.1f} s from sending to result")
        time.sleep(2 + 5 + 3)  # past its idle time and a poll
        assert stack.pids("stylize_worker") == [worker]  # kept, however idle
        assert not log_lines(stack, "stylize-worker leaving")


# --- no worker can start ------------------------------------------------------------------------------


def test_with_no_worker_able_to_start_a_job_fails_in_bounded_time_saying_why(tmp_path: Path, opened) -> None:
    """`--workers 0`: Batch never places a worker, as in an account whose GPU quota is 0."""
    args = ("--workers", "0", "--parameter", "WorkerStartTimeoutSeconds=6")
    with running_stack(tmp_path, args) as stack:
        client = opened(stack)
        sent = time.monotonic()
        done = result(client, submit(client), timeout=120)

        assert done["event"].startswith("TRANSFER_STYLE_FAILED::")
        waited = time.monotonic() - sent
        assert waited < 60, waited  # the start timeout (6 s), then the failure path: not an hour
        assert done["data"]["error"].startswith("no GPU worker")
        assert "please try again later" in done["data"]["error"]
        assert not stack.pids("stylize_worker")
