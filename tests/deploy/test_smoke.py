"""`make smoke` against the local stack (`python -m stylelocal`, here with an access key): the real
client, the real functions, state machine and worker; every step passes and is timed. The key is
honoured: without it the connection is refused, and the smoke test says why."""

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_stack(tmp_path_factory.mktemp("smoke"), args=("--access-key", KEY)) as running:
        yield running


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "styledeploy", "smoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_smoke_passes_against_the_local_stack_and_times_every_step(stack: Running):
    done = smoke("--site", stack.url, "--key", KEY, "--job-timeout", "300")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = dict(re.findall(r"^  (.+?)\s+(\d+\.\d\d) s", done.stdout, re.M))
    assert list(steps) == [
        "connect (requester and watcher)",
        "LIST_STYLES",
        "public job accepted",
        "public job completed",
        "public result fetched",
        "public result broadcast to the watcher",
        "private job accepted",
        "private job completed",
        "private result fetched",
        "GET_JOB of the private job",
        "the private job was not broadcast",
    ]
    assert re.search(r"public job completed\s+[\d.]+ s  \(\d+ progress events\)", done.stdout)
    assert done.stdout.rstrip().splitlines()[-1].startswith("smoke test passed in ")


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
