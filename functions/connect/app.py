"""$connect: remember the connection, so that public results can be broadcast to it."""

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
    connections.add(connection_id(event))
    # a $connect answer other than 2xx refuses the connection; there is no body to send
    return {"statusCode": 200}
