"""Posting to WebSocket connections through API Gateway's @connections management API."""

from __future__ import annotations

import json
from typing import Any

import boto3

from .protocol import MAX_MESSAGE_BYTES
from .settings import settings


class Gateway:
    def __init__(self, endpoint: str | None = None) -> None:
        # endpoint_url is explicit: it is the API's own URL, never the general AWS endpoint
        self.client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint or settings.websocket_endpoint)

    def send(self, connection_id: str, payload: dict[str, Any]) -> bool:
        """Post one message; False if the connection is gone (410), so the caller can forget it."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(data)} bytes is over API Gateway's {MAX_MESSAGE_BYTES}")
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self.client.exceptions.GoneException:
            return False
        return True
