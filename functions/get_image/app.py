"""GET_IMAGE: one public painting, for its permalink (painting.html?id=<jobId>): the pair, the
style (and a blend's shares) and when it was made, as the Feed shows it. Only a Feed item is
answered (a public job that succeeded and was not taken back); any other id, private, unknown,
unfinished or taken back, gets the same ERROR. It reads only the attributes the Feed shows."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice.jobs import Jobs, gallery_entry
from styleservice.protocol import GET_IMAGE, IMAGE, GetImage, ProtocolError, message
from styleservice.routes import route

logger = Logger()
tracer = Tracer()
jobs = Jobs()

NOT_FOUND = "no public painting with that jobId: it may have been taken back by its owner"


def image(request: GetImage, event: dict[str, Any]) -> dict[str, Any]:
    item = jobs.public_item(request.job_id)
    if item is None:
        raise ProtocolError(NOT_FOUND)
    return message(IMAGE, gallery_entry(item))


answer = route(GET_IMAGE, GetImage, image)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
