"""AWS on this machine for the tests: stylelocal.aws.LocalAws (a moto server holding the
template's resources), plus a way to invoke a function as `sam local invoke` would (its handler,
its template environment, an event file) but in this process."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from stylelocal import aws as local_aws
from stylelocal import template
from stylelocal.template import ROOT

REGION = local_aws.REGION
EVENTS = ROOT / "events"
LAYER_PATHS = [ROOT / "layers" / "common"]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that powertools and handlers read."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:123456789012:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def event(path: str | Path) -> dict[str, Any]:
    """An event file, relative to events/."""
    return json.loads((EVENTS / path).read_text())


def sqs_event(*bodies: dict[str, Any] | str, receive_count: int = 1) -> dict[str, Any]:
    """An SQS event like Lambda's, one record per body, each with a fresh message id."""
    template = event("notify/progress.json")["Records"][0]
    records = []
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        record = copy.deepcopy(template)
        record.update(messageId=str(uuid.uuid4()), body=text, md5OfBody=hashlib.md5(text.encode()).hexdigest())
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        records.append(record)
    return {"Records": records}


def queued_results(aws: local_aws.LocalAws) -> list[dict[str, Any]]:
    """The messages waiting on the results queue (up to 10), read off it: what the notifier would get."""
    received = aws.client("sqs").receive_message(QueueUrl=aws.refs["ResultsQueue"], MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in received.get("Messages", [])]


class LocalAws(local_aws.LocalAws):
    """The template's resources in a (reset) moto server, and its functions run in this process."""

    def __init__(self, endpoint: str, overrides: dict[str, str] | None = None) -> None:
        super().__init__(endpoint, overrides)
        self._modules: dict[str, ModuleType] = {}

    @contextmanager
    def _as_function(self, logical_id: str) -> Iterator[dict[str, Any]]:
        props = template.function(logical_id)
        saved_env, saved_path = dict(os.environ), list(sys.path)
        os.environ.update(self.environment(logical_id))
        sys.path[:0] = [str(ROOT / props["CodeUri"]), *map(str, LAYER_PATHS)]
        try:
            yield props
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.path[:] = saved_path

    def handler(self, logical_id: str) -> Any:
        """The function's handler, imported once (a warm container keeps its module)."""
        with self._as_function(logical_id) as props:
            module_name, function_name = props["Handler"].rsplit(".", 1)
            if logical_id not in self._modules:
                path = ROOT / props["CodeUri"] / f"{module_name.replace('.', '/')}.py"
                spec = importlib.util.spec_from_file_location(f"lambda_{logical_id}", path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"no handler module at {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module  # as an import would: dataclasses and pickling look it up
                spec.loader.exec_module(module)
                self._modules[logical_id] = module
            return getattr(self._modules[logical_id], function_name)

    def invoke(self, logical_id: str, payload: dict[str, Any] | str | Path) -> Any:
        """Run the handler on an event (a dict, or a file under events/), in its environment."""
        if not isinstance(payload, dict):
            payload = event(payload)
        handler = self.handler(logical_id)
        with self._as_function(logical_id):
            return handler(payload, LambdaContext(function_name=logical_id))
