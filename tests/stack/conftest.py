"""Fixtures for the stack's tests: one moto server per session, reset and re-populated from
template.yaml for every test."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import requests
from moto.server import ThreadedMotoServer

from .local_aws import LocalAws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    # credentials for boto3; moto accepts any, and nothing here may reach real AWS
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str) -> LocalAws:
    """The template's resources, fresh for each test."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return LocalAws(moto_endpoint).create()
