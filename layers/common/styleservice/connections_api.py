"""Posting to WebSocket connections through API Gateway's @connections management API (the local
stack's stand-in for that API is local/stylelocal/gateway.py)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3

from .protocol import MAX_MESSAGE_BYTES
from .settings import settings

# The local stack only (`make up`): its @connections endpoint answers only requests that carry the
# secret it gave the functions in this variable (local/stylelocal/gateway.py). In AWS the variable
# is never set, and API Gateway checks the requests' SigV4 signatures against IAM instead.
LOCAL_SECRET_VARIABLE = "STYLELOCAL_CONNECTIONS_SECRET"
LOCAL_SECRET_HEADER = "X-Stylelocal-Connections-Secret"
log = logging.getLogger(__name__)


def management_client(endpoint: str, local_secret: str | None = None) -> Any:
    """boto3's apigatewaymanagementapi client for `endpoint`; with `local_secret` (by default the
    environment's, set by the local stack alone) every request carries it in LOCAL_SECRET_HEADER."""
    # endpoint_url is explicit: it is the API's own URL, never the general AWS endpoint
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    secret = os.environ.get(LOCAL_SECRET_VARIABLE) if local_secret is None else local_secret
    if secret:

        def add_secret(request: Any, **_: Any) -> None:
            request.headers[LOCAL_SECRET_HEADER] = secret

        client.meta.events.register("before-sign.apigatewaymanagementapi", add_secret)
    return client


class ConnectionsApi:
    def __init__(self, endpoint: str | None = None) -> None:
        self.client = management_client(endpoint or settings.websocket_endpoint)

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


def broadcast(gateway: ConnectionsApi, connections: Any, payload: dict[str, Any], threads: int = 10) -> int:
    """Post `payload` to every open connection (styleservice.connections.Connections), `threads`
    at a time (botocore's pool holds 10); a gone one (410) is forgotten. Best effort: one
    connection's failure stops none of the others. The number reached."""
    from concurrent.futures import ThreadPoolExecutor

    def one(connection_id: str) -> bool:
        try:
            if gateway.send(connection_id, payload):
                return True
            connections.remove(connection_id)
        except Exception:  # a stranger's connection must not stop the broadcast
            log.exception("broadcast post failed: %s", connection_id)
        return False

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(one, connections.ids()))
