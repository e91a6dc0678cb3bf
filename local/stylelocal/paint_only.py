"""The worker pool's task alone: a state machine made of the template's PaintOnWorker state (the
same parameters, heartbeat and timeout, after its Limits), so that a worker can be driven with
real task tokens from moto's Step Functions without the rest of the stack: the worker's tests and
its benchmark (benchmarks/bench_worker.py) use it.

    machine = PaintOnly(aws)             # in a moto that executes state machines (start_moto)
    arn = machine.start(job)             # job: a stylejob Job's message; its item is recorded RUNNING
    execution = machine.wait(arn, 60)    # describe_execution once it has ended
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from .template import ROOT, resources

STATE = "PaintOnWorker"


def definition(aws: Any) -> str:
    """The two states of the template's definition, substituted as the template substitutes them."""
    props = resources("AWS::Serverless::StateMachine")["TransferStateMachine"]["Properties"]
    text = (ROOT / props["DefinitionUri"]).read_text()
    for key, value in aws.resolve(props.get("DefinitionSubstitutions", {})).items():
        text = text.replace("${" + key + "}", str(value))
    states = json.loads(text)["States"]
    [branch] = [b for b in states["Run"]["Branches"] if STATE in b["States"]]
    task = {**branch["States"][STATE], "End": True}
    return json.dumps({"StartAt": "Limits", "States": {"Limits": {**states["Limits"], "Next": STATE}, STATE: task}})


class PaintOnly:
    def __init__(self, aws: Any, name: str = "PaintOnly") -> None:
        self.aws = aws
        self.sfn = aws.client("stepfunctions")
        self.arn = self.sfn.create_state_machine(
            name=name, definition=definition(aws), roleArn="arn:aws:iam::123456789012:role/local"
        )["stateMachineArn"]

    def start(self, job: dict[str, Any], connection_id: str = "requester=") -> str:
        """Records the job as TRANSFER_STYLE and RecordJob would (RUNNING) and starts its task."""
        now = int(time.time() * 1000)
        item = {**job, "connectionId": connection_id, "status": "RUNNING", "progress": 0, "createdAt": now,
                "updatedAt": now, "expiresAt": now // 1000 + 86400}  # fmt: skip
        self.aws.client("dynamodb").put_item(TableName=self.aws.refs["JobsTable"], Item=_typed(item))
        return self.sfn.start_execution(stateMachineArn=self.arn, name=job["jobId"], input=json.dumps(job))[
            "executionArn"
        ]

    def wait(self, arn: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (execution := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{arn} is still running after {timeout} s")
            time.sleep(0.05)
        return execution


def _typed(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    plain = json.loads(json.dumps(item), parse_float=Decimal)  # DynamoDB's numbers are Decimals
    return {key: serializer.serialize(value) for key, value in plain.items()}
