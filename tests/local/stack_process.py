"""The local stack as its users start it (`python -m stylelocal`, in a subprocess), and images made
here to send it. Shared by the end-to-end tests (tests/local/test_end_to_end.py), the browser tests
(tests/web/) and the pages' screenshot script."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image
from stylelocal.aws import LocalAws
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """`python -m stylelocal` in a subprocess, with its output in a log file."""

    def __init__(self, tmp: Path, data: Path | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.log = tmp / f"stack-{self.port}.log"
        command = [sys.executable, "-m", "stylelocal", "--port", str(self.port), "--device", "cpu"]
        if data:
            command += ["--data", str(data)]
        command += args
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no real AWS here
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the stack did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.ws_url = requests.get(f"{self.url}/config.json", timeout=5).json()["websocketUrl"]
        printed = re.search(r"Local AWS \(moto\): (\S+)", self.log.read_text())
        assert printed, "the stack did not print where its local AWS is"
        self.aws_endpoint = printed.group(1)

    def aws(self, service: str) -> Any:
        """A client of the stack's local AWS (moto): what an operator would look at, or change,
        with `aws --endpoint-url`. Fake credentials: nothing here can reach AWS."""
        return LocalAws(self.aws_endpoint).client(service)

    def pids(self, marker: str) -> list[int]:
        """The processes this stack started (its descendants, whatever their session: the Batch
        runner gives each job a process group of its own) whose command line holds `marker`: a
        function's warm process ('"function": "NotifyFunction"'), a worker ('stylize_worker')."""
        parents: dict[int, int] = {}
        commands: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:  # it ended meanwhile
                continue
            commands[int(entry.name)] = command.replace(b"\0", b" ").decode(errors="replace")
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
        found, frontier = [], [self.process.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            frontier += children
            found += [pid for pid in children if marker in commands.get(pid, "")]
        return found

    def stop(self) -> int:
        """Ctrl-C, as a user would; the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"the stack did not stop on Ctrl-C:\n{self.log.read_text()[-3000:]}") from None


@contextlib.contextmanager
def running_stack(directory: Path, args: tuple[str, ...] = ()) -> Iterator[Running]:
    """The stack for a test module (`args`: more options of python -m stylelocal): started, then
    stopped with Ctrl-C, which must end it cleanly together with every process it started."""
    running = Running(directory, args=args)
    yield running
    assert running.stop() == 0, running.log.read_text()[-3000:]
    leftovers = subprocess.run(["pgrep", "-s", str(running.process.pid)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


class Client:
    """A WebSocket client that keeps every message it receives. Like a browser it sends no pings
    (API Gateway needs none): a stack slowed by ten jobs at once must not look like a dead peer."""

    def __init__(self, ws_url: str) -> None:
        self._resources = contextlib.ExitStack()  # websockets wants its connections entered
        self.ws: ClientConnection = self._resources.enter_context(connect(ws_url, max_size=None, ping_interval=None))
        self.seen: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any]) -> None:
        self.ws.send(json.dumps(body))

    def wait_for(self, predicate, timeout: float = 30, start: int = 0) -> dict[str, Any]:
        """The first message from the `start`th on that satisfies `predicate`, waiting for it."""
        for message in self.seen[start:]:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                break
            self.seen.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no such message within {timeout} s; got {[m['event'] for m in self.seen]}")

    def event(self, name: str, timeout: float = 30, start: int = 0) -> dict[str, Any]:
        return self.wait_for(lambda m: m["event"] in (name, "ERROR"), timeout, start)

    def ask(self, body: dict[str, Any], answer: str) -> dict[str, Any]:
        """Send a request and return its answer's data: only a message after the request counts."""
        start = len(self.seen)
        self.send(body)
        message = self.event(answer, start=start)
        assert message["event"] == answer, message
        return message["data"]

    def close(self) -> None:
        self._resources.close()


def photo_png(width: int, height: int) -> bytes:
    """A small colourful PNG: gradients and a disc, something a style can change."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([0.3 + 0.6 * x, 0.2 + 0.6 * y, 0.7 - 0.4 * x * y], axis=-1)
    rgb[(x - 0.4) ** 2 + (y - 0.3) ** 2 < 0.02] = (0.9, 0.3, 0.2)
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
