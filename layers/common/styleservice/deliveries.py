"""Which connections a result's push has already reached, so that a redelivered result skips them.

SQS delivers at least once, and a notify process can die in the middle of a broadcast (killed, out
of time, out of memory). The redelivered message then starts the delivery again. Each successful
POST is recorded right after it, as one item per (event, job, connection) in the idempotency
table (its `id` key and `expiration` TTL), and a delivery that is a retry skips the connections
recorded. So a connection gets a push twice only if the process died between that POST and its
record: at most the POSTs in flight at that moment. The pages ignore a repeat anyway (a result is
shown once per jobId).
"""

from __future__ import annotations

import time

import boto3

from .settings import settings

KEPT_SECONDS = 24 * 3600  # as long as the idempotency records: longer than any redelivery


def _id(event: str, job_id: str, connection_id: str) -> str:
    return f"delivered#{event}#{job_id}#{connection_id}"


class Deliveries:
    def __init__(self, table_name: str | None = None) -> None:
        self.table = boto3.resource("dynamodb").Table(table_name or settings.idempotency_table)

    def reached(self, event: str, job_id: str, connection_id: str) -> bool:
        key = {"id": _id(event, job_id, connection_id)}
        return "Item" in self.table.get_item(Key=key, ConsistentRead=True, ProjectionExpression="id")

    def record(self, event: str, job_id: str, connection_id: str) -> None:
        item = {"id": _id(event, job_id, connection_id), "expiration": int(time.time()) + KEPT_SECONDS}
        self.table.put_item(Item=item)
