"""Fixtures for the deploy tooling's tests: a moto server (nothing here may reach AWS) and a Runner
whose boto3 clients point at it."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from styledeploy.runner import Runner

REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str) -> Any:
    """boto3 clients of a reset moto, in REGION: aws("s3")."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def client(service: str) -> Any:
        return boto3.client(
            service, region_name=REGION, endpoint_url=moto_endpoint,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip

    return client


@pytest.fixture
def runner(aws: Any) -> Runner:
    return Runner(REGION, out=io.StringIO(), client_factory=aws)
