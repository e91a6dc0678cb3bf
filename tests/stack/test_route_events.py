"""The route functions' event files are API Gateway WebSocket events: powertools' parser models of
those events accept them, and each message goes to the route its action selects."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)

from .local_aws import event
from .routes_support import CONNECTION_ID, event_files

ROUTES = {
    "connect": "$connect",
    "disconnect": "$disconnect",
    "default": "$default",
    "transfer_style": "TRANSFER_STYLE",
    "request_upload": "REQUEST_UPLOAD",
    "list_styles": "LIST_STYLES",
    "list_images": "LIST_IMAGES",
    "get_job": "GET_JOB",
    "get_service": "GET_SERVICE",
    "preview_styles": "PREVIEW_STYLES",
    "delete_job": "DELETE_JOB",
    "get_image": "GET_IMAGE",
}
FILES = [path for folder in ROUTES for path in event_files(folder)]


def test_every_route_function_has_events():
    assert {path.split("/")[0] for path in FILES} == set(ROUTES)


@pytest.mark.parametrize("path", FILES)
def test_the_event_has_api_gateways_websocket_shape(path: str):
    folder = path.split("/")[0]
    data = event(path)
    model = {
        "connect": APIGatewayWebSocketConnectEventModel,
        "disconnect": APIGatewayWebSocketDisconnectEventModel,
    }.get(folder, APIGatewayWebSocketMessageEventModel)
    parsed = model.model_validate(data)
    context = parsed.request_context
    assert context.route_key == ROUTES[folder]
    assert context.connection_id == CONNECTION_ID
    assert data["requestContext"]["requestTimeEpoch"] > 10**12  # milliseconds, as API Gateway sends
    if folder in ("connect", "disconnect"):
        assert "body" not in data
        return
    try:
        action = json.loads(data["body"]).get("action")
    except (ValueError, AttributeError):
        action = None
    if folder != "default":
        # what API Gateway would do with the body: route it by its action (or to $default)
        assert action == ROUTES[folder] or action is None
