"""Fixtures for the local stack's tests: a moto server started by stylelocal.aws.start_moto (with
the moto fixes and Step Functions execution) for each test module, reset and given the template's
resources for every test; a LocalBatch that runs a fake worker; images made here."""

from __future__ import annotations

import io
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from stylelocal import moto_fixes
from stylelocal.aws import FAKE_CREDENTIALS, REGION, LocalAws, MotoServer, start_moto
from stylelocal.batch import LocalBatch

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """The template's resources, fresh for each test. boto3 in this process (styleservice's
    stores, for one) reaches moto through AWS_ENDPOINT_URL, with fake credentials."""
    for name, value in {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    requests.post(f"{moto.endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return LocalAws(moto.endpoint).create()


@pytest.fixture
def fixes() -> Iterator[None]:
    """Lets a test install and uninstall moto fixes: puts back what was installed before it."""
    before = moto_fixes.installed()
    yield
    moto_fixes.uninstall(moto_fixes.installed() - before)
    moto_fixes.install(before - moto_fixes.installed())


def fake_worker(*arguments: str) -> list[str]:
    """The command of a fake worker (tests/local/fake_worker.py) doing what `arguments` say."""
    return [sys.executable, str(FAKE_WORKER), *arguments]


@pytest.fixture
def batch_for(aws: LocalAws) -> Iterator[Any]:
    """batch_for(*fake worker arguments, **LocalBatch options): a started LocalBatch on the CPU,
    stopped after the test."""
    started: list[LocalBatch] = []

    def make(*arguments: str, **options: Any) -> LocalBatch:
        options.setdefault("device", "cpu")
        command = fake_worker(*arguments) if arguments or "command" not in options else options.pop("command")
        batch = LocalBatch(aws, command=command, **options).start()
        started.append(batch)
        return batch

    yield make
    for batch in started:
        batch.stop()


def image_bytes(image: Image.Image, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=image_format)
    return buffer.getvalue()


def content_image() -> bytes:
    """96x64 (3:2): a gradient with a dark disc."""
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2.6, y * 3.9, 255 - x * 2.6], axis=-1)
    rgb[(x - 48) ** 2 + (y - 32) ** 2 < 300] = (20, 20, 40)
    return image_bytes(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)))


def new_job(aws: LocalAws, *, private: bool = False, style: str = "swirls", **options: Any) -> dict[str, Any]:
    """Records a job as TRANSFER_STYLE does (styleservice.jobs.Jobs.create) and returns the
    execution input that it would start the state machine with."""
    from styleservice.jobs import Jobs

    job_id = uuid.uuid4().hex
    area = "private" if private else "public"
    execution = {
        "jobId": job_id,
        "inputKey": f"{area}/input/{job_id}.jpg",
        "styleKey": f"styles/{style}.jpg",
        "outputKey": f"{area}/output/{job_id}.jpg",
        "isPrivate": private,
        "options": {"preset": "preview", "size": 64, "strength": 0.5, "preserveColors": False, "styleScale": 1.0,
                    "seed": 0, **options},
    }  # fmt: skip
    Jobs(aws.refs["JobsTable"]).create(
        {
            "jobId": job_id,
            "connectionId": "requester=",
            "tokenHash": "0" * 64,
            "isPrivate": private,
            "inputKey": execution["inputKey"],
            "style": style,
            "styleKey": execution["styleKey"],
            "outputKey": execution["outputKey"],
            "options": execution["options"],
            "expiresAt": int(time.time()) + 3 * 86400,
        }
    )
    return execution


def wait_for_execution(aws: LocalAws, arn: str, timeout: float = 60) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.1)
    return execution


def history(aws: LocalAws, arn: str) -> list[dict[str, Any]]:
    return aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]


def records(directory: Path) -> list[dict[str, Any]]:
    """What the fake worker recorded, one entry per attempt, in order."""
    return [json.loads(p.read_text()) for p in sorted(directory.glob("attempt-*.json"))]


def process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers; it is dead if /proc says so
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
