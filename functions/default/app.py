"""$default: every message whose `action` selects no route (unknown, missing, not a string, or a
message that is not JSON at all) gets an ERROR that says what the valid actions are."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice.protocol import ACTIONS, ProtocolError, error, load_json, printable
from styleservice.routes import respond

logger = Logger()
tracer = Tracer()

VALID = ", ".join(ACTIONS)


def refusal(body: str | None) -> tuple[str | None, str]:
    """(the action the client named, if any, the reason) for a message that reached $default."""
    if not body:
        return None, f"empty message: send a JSON object with an 'action', one of {VALID}"
    try:
        data = load_json(body)
    except ProtocolError as unreadable:  # bad JSON, nesting too deep, a number too long
        return None, str(unreadable)
    if not isinstance(data, dict):
        return None, f"the message must be a JSON object with an 'action', one of {VALID}"
    if "action" not in data:
        return None, f"the message has no 'action': send one of {VALID}"
    action = data["action"]
    if not isinstance(action, str):
        return None, f"action must be a string, one of {VALID}"
    shown = printable(action)  # echo and log a bounded amount, lone surrogates escaped
    if action in ACTIONS:
        # API Gateway routes these by name; reaching $default means the route is missing
        logger.error("valid action reached $default", extra={"action": action})
        return action, f"action {action} is not available right now; try again later"
    return shown, f"unknown action {shown!r}: send one of {VALID}"


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action, reason = refusal(event.get("body"))
    logger.info("refused", extra={"action": action, "reason": reason})
    return respond(error(action, reason))
