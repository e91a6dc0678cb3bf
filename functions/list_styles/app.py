"""LIST_STYLES: the style catalogue, i.e. every styles/<name>.jpg in the bucket, with the public
URL of its picture and, from the catalogue's manifest (styles/catalogue.json, uploaded with the
pictures from the repository's catalogue/), its title, artist and year. Styles the manifest lists
come first, in its order; others follow by name, titled after their name (styleservice.catalogue)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice import catalogue as styles
from styleservice.protocol import LIST_STYLES, STYLES, ListStyles, message
from styleservice.routes import route
from styleservice.storage import public_url, s3_client

logger = Logger()
tracer = Tracer()
s3 = s3_client()


def catalogue(request: ListStyles, event: dict[str, Any]) -> dict[str, Any]:
    found = [
        {"name": style.name, "previewUrl": public_url(style.key), "title": style.title, "artist": style.artist,
         "year": style.year}
        for style in styles.styles(s3)
    ]  # fmt: skip
    return message(STYLES, {"styles": found})


answer = route(LIST_STYLES, ListStyles, catalogue)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
