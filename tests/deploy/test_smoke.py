"""`make smoke` against the local stack (`python -m stylelocal`, here with an access key): the real
client, the real functions, state machine and worker; every phase passes and is timed. The key is
honoured: without it the connection is refused, and the smoke test says why. API Gateway's idle
timeout (10 minutes; the local gateway's --idle-timeout, a few seconds here) neither ends a run
that keeps its connections alive, nor one that must reconnect: it follows its job with GET_JOB."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import websockets
from websockets.sync.client import connect

from tests.local.stack_process import ROOT, Running, running_stack

KEY = "smoke-Key_42"
IDLE = 6.0  # seconds without a message after which the idle stack closes a connection (longer than a cold start)
PHASES = ["accepted", "preview", "first progress", "result", "result fetched"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_stack(tmp_path_factory.mktemp("smoke"), args=("--access-key", KEY)) as running:
        yield running


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A stack whose gateway closes a connection idle for IDLE seconds, as API Gateway does after 10 minutes."""
    with running_stack(tmp_path_factory.mktemp("idle"), args=("--idle-timeout", str(IDLE))) as running:
        yield running


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "styledeploy", "smoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def timed(stdout: str) -> dict[str, float]:
    return {name: float(seconds) for name, seconds in re.findall(r"^  (.+?)\s+(\d+\.\d\d) s", stdout, re.M)}


def test_smoke_passes_against_the_local_stack_and_times_every_phase(stack: Running):
    done = smoke("--site", stack.url, "--key", KEY, "--job-timeout", "300")
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(timed(done.stdout)) == [
        "connect (requester and watcher)",
        "LIST_STYLES",
        *[f"public job: {phase}" for phase in PHASES],
        "public job: broadcast to the watcher",
        *[f"private job: {phase}" for phase in PHASES],
        "GET_JOB of the private job",
        "the private job was not broadcast",
    ]
    # each phase of a job says when it came after sending, in order
    for kind in ("public", "private"):
        at = [float(a) for a in re.findall(rf"^  {kind} job: (?:preview|first progress|result) .*\(at (\d+\.\d\d) s",
                                             done.stdout, re.M)]  # fmt: skip
        assert len(at) == 3
        assert at == sorted(at)
    assert re.search(r"public job: result\s+[\d.]+ s  \(at [\d.]+ s; \d+ progress events\)", done.stdout)
    assert "public job: broadcast to the watcher" in done.stdout
    last = done.stdout.rstrip().splitlines()[-1]
    assert re.fullmatch(r"smoke test passed in [\d.]+ s", last)  # no reconnection was needed


def test_the_local_stack_refuses_a_connection_without_the_key(stack: Running):
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(stack.ws_url, open_timeout=30).close()
    assert refused.value.response.status_code == 401
    with connect(f"{stack.ws_url}?key={KEY}", open_timeout=30) as client:
        client.send('{"action": "LIST_STYLES"}')
        assert '"event":"STYLES"' in client.recv(timeout=30).replace(" ", "")


def test_smoke_without_the_key_fails_and_says_why(stack: Running):
    done = smoke("--url", stack.ws_url)
    assert done.returncode == 1
    assert "refused with HTTP 401 (the stack has an access key: pass --key)" in done.stderr + done.stdout


@pytest.mark.slow  # a stack of its own and two 256 px jobs: about a minute
def test_connections_kept_alive_outlast_the_idle_timeout(idle_stack: Running):
    """A job here takes longer than IDLE (256 px: many seconds on a CPU, even on a warm worker); a
    request every 2 s keeps both connections open."""
    done = smoke("--url", idle_stack.ws_url, "--keepalive", "2", "--job-timeout", "300", "--size", "256")
    assert done.returncode == 0, done.stdout + done.stderr
    [result_at] = re.findall(r"^  public job: result .*\(at (\d+\.\d\d) s", done.stdout, re.M)
    assert float(result_at) > IDLE  # left alone, the connections would have been closed meanwhile
    assert re.fullmatch(r"smoke test passed in [\d.]+ s", done.stdout.rstrip().splitlines()[-1])


@pytest.mark.slow  # two 256 px jobs, reconnecting: about a minute
def test_without_keepalive_it_reconnects_and_follows_the_job_with_get_job(idle_stack: Running):
    done = smoke("--url", idle_stack.ws_url, "--keepalive", "0", "--job-timeout", "300", "--size", "256")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"smoke test passed in [\d.]+ s \(\d+ reconnections?\)$", done.stdout.rstrip())
    for kind in ("public", "private"):
        assert f"{kind} job: result" in timed(done.stdout)
    # the watcher was away when the broadcast went out, or heard it: either way it is accounted for
    broadcast = next(line for line in done.stdout.splitlines() if "public job: broadcast to the watcher" in line)
    assert "after the result" in broadcast or "found in the Feed instead" in broadcast
