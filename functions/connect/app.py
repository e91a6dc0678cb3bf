"""$connect: check the access key, when the stack has one, and remember the connection, so that
public results can be broadcast to it."""

from __future__ import annotations

import hmac
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice.connections import Connections
from styleservice.routes import connection_id
from styleservice.settings import settings

logger = Logger()
tracer = Tracer()
connections = Connections()


def key_accepted(event: dict[str, Any]) -> bool:
    """Without an AccessKey (the default) anyone may connect; with one, the client connects to
    wss://...?key=<AccessKey> (the pages pass on their own ?key=)."""
    expected = settings.access_key
    if not expected:
        return True
    given = (event.get("queryStringParameters") or {}).get("key") or ""
    return hmac.compare_digest(given.encode(), expected.encode())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # a $connect answer other than 2xx refuses the connection; there is no body to send
    if not key_accepted(event):
        logger.info("connection refused: missing or wrong access key")
        return {"statusCode": 401}
    connections.add(connection_id(event))
    return {"statusCode": 200}
