"""LIST_IMAGES: the public gallery, newest first, a page at a time. It reads only the sparse Feed
index, which holds public jobs that succeeded: private jobs never get the attribute it is built on."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice.jobs import Jobs, gallery_entry
from styleservice.protocol import IMAGES, LIST_IMAGES, ListImages, ProtocolError, message
from styleservice.routes import route

logger = Logger()
tracer = Tracer()
jobs = Jobs()


def gallery(request: ListImages, event: dict[str, Any]) -> dict[str, Any]:
    try:
        items, cursor = jobs.public_page(request.limit, request.cursor)
    except ValueError as bad:  # a cursor this service did not give out
        raise ProtocolError(f"cursor: {bad}; leave it out to start from the newest") from None
    images = [
        gallery_entry(item)
        for item in items
        if not item.get("isPrivate")  # the index cannot hold them; never trust that alone
    ]
    return message(IMAGES, {"images": images, "cursor": cursor})


answer = route(LIST_IMAGES, ListImages, gallery)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
