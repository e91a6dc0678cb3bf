"""The common shape of a WebSocket route handler: parse and validate the body, answer with one
`{event, data}` message (the route's response goes back to the calling client), and turn every
refusal into an ERROR message rather than an exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from .protocol import ProtocolError, error, parse, printable

logger = Logger()


def respond(payload: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(payload, separators=(",", ":"))}


def route(action: str, model: type, work: Callable[[Any, dict[str, Any]], dict[str, Any]]) -> Callable:
    """A Lambda handler for `action`: `work(request, event)` returns the answer message."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            request = parse(event.get("body"), model)
            return respond(work(request, event))
        except ProtocolError as refused:
            logger.info("refused", extra={"action": action, "reason": printable(str(refused), 300)})
            return respond(error(action, str(refused)))

    return handler


def connection_id(event: dict[str, Any]) -> str:
    return event["requestContext"]["connectionId"]
