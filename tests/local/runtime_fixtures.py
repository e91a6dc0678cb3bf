"""Fixtures and helpers for the tests of the local Lambda runtime, gateway and SQS event source:
the runtime (also one that records its invocations), a started gateway, pages to serve, and
functions made for the tests. `aws` (moto with the template's resources, fresh for each test)
comes from tests/local/conftest.py.

Test modules take the fixtures by assignment (`gateway = runtime_fixtures.gateway`) rather than by
import, so that a test's parameter of the same name is not a redefinition for the linter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stylelocal.aws import LocalAws
from stylelocal.gateway import Gateway
from stylelocal.lambdas import FunctionConfig, LambdaRuntime

# Handlers of functions made for the tests (not in template.yaml): they show what the runtime
# gives a function, which the template's functions do not tell.
PROBE = """
import json, os, sys, time

COUNT = 0


def environment(event, context):
    return {
        "environ": dict(os.environ),
        "path": sys.path[:4],
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "remaining": context.get_remaining_time_in_millis(),
        "requestId": context.aws_request_id,
        "name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
    }


def count(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid()}


def sleep(event, context):
    time.sleep(event.get("seconds", 0))
    return {"pid": os.getpid(), "slept": event.get("seconds", 0), "echo": event.get("echo")}


def slow_route(event, context):
    request = json.loads(event["body"])
    time.sleep(request.get("seconds", 0))
    return {"statusCode": 200, "body": json.dumps({"echo": request.get("echo")})}


def fail(event, context):
    raise ValueError("no good: " + str(event.get("why")))


def noisy(event, context):
    print("printed to stdout")
    print("printed to stderr", file=sys.stderr)
    sys.stdout.write("no newline")
    return {"ok": True}


def unserialisable(event, context):
    return {1, 2}


def decimals(event, context):
    from decimal import Decimal

    return {"whole": Decimal("3"), "half": Decimal("1.5")}


def exits(event, context):
    os._exit(3)


def answer(event, context):
    return event["answer"]
"""


def probe_function(
    directory: Path,
    name: str,
    handler: str,
    *,
    timeout: float = 5,
    environment: dict[str, str] | None = None,
    code: str = PROBE,
) -> FunctionConfig:
    """A function outside template.yaml: functions/<name>/app.py under `directory`."""
    code_dir = directory / name
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "app.py").write_text(code)
    return FunctionConfig(
        logical_id=name,
        code_dir=code_dir,
        handler=f"app.{handler}",
        timeout=timeout,
        memory_mb=128,
        layer_dirs=(),
        environment=environment or {},
    )


class RecordingRuntime(LambdaRuntime):
    """The runtime, keeping every event it is given (to check their shape)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[str, Any]] = []
        self.results: list[tuple[str, Any, Any]] = []
        self._events_lock = threading.Lock()

    def invoke(self, logical_id: str, event: Any) -> Any:
        with self._events_lock:
            self.events.append((logical_id, event))
        result = super().invoke(logical_id, event)
        with self._events_lock:
            self.results.append((logical_id, event, result))
        return result

    def results_of(self, logical_id: str) -> list[tuple[Any, Any]]:
        """(event, result) of every finished invocation of the function, in finishing order."""
        with self._events_lock:
            return [(event, result) for name, event, result in self.results if name == logical_id]

    def events_of(self, logical_id: str) -> list[Any]:
        with self._events_lock:
            return [event for name, event in self.events if name == logical_id]


class Logs:
    """Every line the functions log, by function (a LambdaRuntime `logs` sink)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: dict[str, list[str]] = {}

    def __call__(self, logical_id: str, line: str) -> None:
        with self._lock:
            self.lines.setdefault(logical_id, []).append(line)

    def of(self, logical_id: str) -> list[str]:
        with self._lock:
            return list(self.lines.get(logical_id, []))


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def runtime(aws: LocalAws, logs: Logs) -> Iterator[LambdaRuntime]:
    with LambdaRuntime(aws, logs=logs) as started:
        yield started


def wait_for(predicate: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """Pages to serve, and a file beside them that must never be served."""
    web = tmp_path / "web"
    (web / "sub").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>index</title>")
    (web / "app.js").write_text("export const answer = 42;\n")
    (web / "sub" / "page.html").write_text("<p>sub page</p>")
    (web / ".hidden").write_text("hidden")
    (tmp_path / "secret.txt").write_text("SECRET outside the pages")
    return web


@pytest.fixture
def recording(aws: LocalAws, logs: Logs) -> Iterator[RecordingRuntime]:
    with RecordingRuntime(aws, logs=logs) as runtime:
        yield runtime


def started(runtime: RecordingRuntime, web: Path, **options: Any) -> Gateway:
    gateway = Gateway(runtime, web_dir=web, **options).start_background()
    runtime.update_overrides({"WEBSOCKET_ENDPOINT": gateway.management_endpoint})
    return gateway


@pytest.fixture
def gateway(recording: RecordingRuntime, site: Path) -> Iterator[Gateway]:
    gateway = started(recording, site)
    yield gateway
    gateway.stop_background()
