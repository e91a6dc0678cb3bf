"""The connections table: one item per open WebSocket connection (connectionId, connectedAt,
expiresAt as a TTL in epoch seconds, since $disconnect is best effort)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3

from .settings import settings


class Connections:
    def __init__(self, table_name: str | None = None) -> None:
        self.table = boto3.resource("dynamodb").Table(table_name or settings.connections_table)

    def add(self, connection_id: str) -> None:
        now = int(time.time())
        self.table.put_item(
            Item={
                "connectionId": connection_id,
                "connectedAt": now,
                "expiresAt": now + settings.connection_ttl_seconds,
            }
        )

    def remove(self, connection_id: str) -> None:
        self.table.delete_item(Key={"connectionId": connection_id})

    def ids(self) -> Iterator[str]:
        """Every connection id, page by page (a Scan page stops at 1 MB)."""
        scan = {"ProjectionExpression": "connectionId"}
        while True:
            page = self.table.scan(**scan)
            for item in page.get("Items", []):
                yield str(item["connectionId"])
            if "LastEvaluatedKey" not in page:
                return
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
