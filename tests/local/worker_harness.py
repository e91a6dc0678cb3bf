"""The pool's worker as the tests run it: one reserved worker's environment (the template's job
definition, as the scaler submits it), the paint-only state machine that puts jobs on the work
queue with real task tokens, and `python -m stylize_worker` run as the local Batch runner runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
from PIL import Image
from stylejob.job import Job, JobOptions
from stylelocal.aws import LocalAws, principal_credentials
from stylelocal.batch import container_environment
from stylelocal.paint_only import PaintOnly
from stylelocal.template import ROOT, resources
from workerpool import Registry, new_worker_id

from .conftest import image_bytes

STYLE_KEY = "styles/stripes.jpg"
LEASE = 3.0  # seconds: heartbeats every second, so a test sees them work


def style_image() -> bytes:
    y, x = np.mgrid[0:80, 0:80]
    stripes = ((x + y) // 6) % 2
    rgb = np.where(stripes[..., None] == 1, (230, 180, 30), (30, 60, 160))
    return image_bytes(Image.fromarray(rgb.astype(np.uint8)), "PNG")


class Pool:
    """One reserved worker's environment (the template's job definition, as the scaler submits
    it), the paint-only state machine, and the things a test looks at."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.machine = PaintOnly(aws)
        self.s3, self.sqs, self.dynamodb = aws.client("s3"), aws.client("sqs"), aws.client("dynamodb")
        self.bucket = aws.refs["ImagesBucket"]
        self.registry = Registry(aws.refs["WorkersTable"], self.dynamodb)
        self.s3.put_object(Bucket=self.bucket, Key=STYLE_KEY, Body=style_image())

    def environment(self, **changes: str) -> dict[str, str]:
        definition = resources("AWS::Batch::JobDefinition")["WorkerJobDefinition"]["Properties"]
        environ = container_environment(self.aws.resolve(definition["ContainerProperties"]["Environment"]))
        worker_id = new_worker_id()
        assert self.registry.reserve(worker_id, desired=10, start_seconds=60)  # as the scaler does
        return {**environ, "WORKER_ID": worker_id, "WORKER_LEASE_SECONDS": str(LEASE), **changes}

    def job(self, content: bytes | None = None, private: bool = False, **options: Any) -> Job:
        job = Job.new(
            private=private,
            content_type="image/jpeg",
            style_key=STYLE_KEY,
            options=JobOptions.model_validate({"preset": "preview", "size": 64, **options}),
        )
        if content is not None:
            self.s3.put_object(Bucket=self.bucket, Key=job.input_key, Body=content)
        return job

    def start(self, job: Job) -> str:
        return self.machine.start(job.message())

    def results(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        queue = self.aws.refs["ResultsQueue"]
        while batch := self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            found += [json.loads(m["Body"]) for m in batch]
            entries = [{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch]
            self.sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
        return found

    def job_item(self, job: Job) -> dict[str, Any]:
        return self.dynamodb.get_item(
            TableName=self.aws.refs["JobsTable"], Key={"jobId": {"S": job.job_id}}, ConsistentRead=True
        )["Item"]

    def queued(self) -> dict[str, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.aws.refs["WorkQueue"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return {"visible": int(attributes["ApproximateNumberOfMessages"]),
                "held": int(attributes["ApproximateNumberOfMessagesNotVisible"])}  # fmt: skip

    def output(self, job: Job) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=job.output_key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None


def process_environment(aws: LocalAws, environ: dict[str, str]) -> dict[str, str]:
    """What the local Batch runner gives a worker: the host's environment without its AWS_*
    settings, the container's variables, moto's endpoint and its job role's (fake) credentials,
    so that the local S3 answers it as S3 answers that role."""
    host = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **host,
        **environ,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_DEFAULT_REGION": aws.region,
        **principal_credentials("WorkerJobRole"),
    }


def worker_process(pool: Pool, aws: LocalAws, **changes: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stylize_worker"], env=process_environment(aws, pool.environment(**changes)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finished(process: subprocess.Popen[str], timeout: float) -> tuple[int, list[dict[str, Any]]]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, [json.loads(line) for line in out.splitlines() if line.startswith("{")]
