"""$disconnect: forget the connection. API Gateway sends this only on a best-effort basis, so the
connections table also expires rows by TTL and the notifier drops ids that answer 410."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice.connections import Connections
from styleservice.routes import connection_id

logger = Logger()
tracer = Tracer()
connections = Connections()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # deleting an id that is not there (already expired, or never stored) is not an error
    connections.remove(connection_id(event))
    return {"statusCode": 200}
