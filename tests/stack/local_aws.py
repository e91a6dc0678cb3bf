"""AWS on this machine for the tests: a moto server holding the template's tables, bucket, queues
and state machine, and a way to invoke a function as `sam local invoke` would (its handler,
its template environment, an event file) but in this process."""

from __future__ import annotations

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

import boto3

from . import template
from .template import ROOT, Resolver

REGION = "us-east-1"
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


class LocalAws:
    """The template's stateful resources created in a (reset) moto server."""

    def __init__(self, endpoint: str, overrides: dict[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.overrides = overrides or {}  # environment values that point at local stand-ins
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}
        self._modules: dict[str, ModuleType] = {}

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def create(self) -> LocalAws:
        self._tables()
        self._buckets()
        self._queues()
        self.refs["WebSocketApi"] = "localws"
        self.attributes[("Distribution", "DomainName")] = "cdn.local.test"
        self.refs["CommonLayer"] = f"arn:aws:lambda:{REGION}:123456789012:layer:common:1"
        self._state_machines()
        return self

    @property
    def resolve(self) -> Resolver:
        return Resolver(self.refs, self.attributes, REGION)

    def _tables(self) -> None:
        dynamodb = self.client("dynamodb")
        for name, resource in template.resources("AWS::DynamoDB::Table").items():
            props = resource["Properties"]
            create: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": "PAY_PER_REQUEST",
            }
            if "GlobalSecondaryIndexes" in props:
                create["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            dynamodb.create_table(**create)
            if ttl := props.get("TimeToLiveSpecification"):
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
            self.refs[name] = name
            self.attributes[(name, "Arn")] = f"arn:aws:dynamodb:{REGION}:123456789012:table/{name}"

    def _buckets(self) -> None:
        s3 = self.client("s3")
        for name in template.resources("AWS::S3::Bucket"):
            bucket = f"{name.lower()}-local"
            s3.create_bucket(Bucket=bucket)
            self.refs[name] = bucket
            self.attributes[(name, "Arn")] = f"arn:aws:s3:::{bucket}"
            self.attributes[(name, "RegionalDomainName")] = f"{bucket}.s3.{REGION}.amazonaws.com"

    def _queues(self) -> None:
        sqs = self.client("sqs")
        for name in template.resources("AWS::SQS::Queue"):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.refs[name] = url
            self.attributes[(name, "QueueUrl")] = url
            self.attributes[(name, "Arn")] = arn
            self.attributes[(name, "QueueName")] = name

    def _state_machines(self) -> None:
        sfn = self.client("stepfunctions")
        for name, resource in template.resources("AWS::Serverless::StateMachine").items():
            props = resource["Properties"]
            definition = (ROOT / props["DefinitionUri"]).read_text()
            for key, value in self.resolve(props.get("DefinitionSubstitutions", {})).items():
                definition = definition.replace("${" + key + "}", str(value))
            arn = sfn.create_state_machine(
                name=name, definition=definition, roleArn="arn:aws:iam::123456789012:role/local"
            )["stateMachineArn"]
            self.refs[name] = arn

    def environment(self, logical_id: str) -> dict[str, str]:
        """What `sam local invoke` puts in the function's environment, with local endpoints."""
        props = template.function(logical_id)
        variables = {k: str(v) for k, v in self.resolve(props["Environment"]["Variables"]).items()}
        return {
            **variables,
            **{k: v for k, v in self.overrides.items() if k in variables},
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(props.get("Timeout", 3)),
            "AWS_SAM_LOCAL": "true",  # as sam local sets it: powertools' tracer stays off
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "_HANDLER": props["Handler"],
        }

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
