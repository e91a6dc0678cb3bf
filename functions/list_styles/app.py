"""LIST_STYLES: the style catalogue, i.e. every styles/<name>.jpg in the bucket, with the public
URL of its picture."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from styleservice import keys
from styleservice.protocol import LIST_STYLES, STYLES, ListStyles, message
from styleservice.routes import route
from styleservice.settings import settings
from styleservice.storage import public_url, s3_client

logger = Logger()
tracer = Tracer()
s3 = s3_client()


def catalogue(request: ListStyles, event: dict[str, Any]) -> dict[str, Any]:
    styles = []
    # a listing page holds at most 1000 keys
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.images_bucket, Prefix="styles/"):
        for item in page.get("Contents", []):
            # anything that is not styles/<name>.jpg (a README, a folder marker, a PNG) is not a style
            if (name := keys.style_name(item["Key"])) is not None:
                styles.append({"name": name, "previewUrl": public_url(item["Key"])})
    return message(STYLES, {"styles": sorted(styles, key=lambda style: style["name"])})


answer = route(LIST_STYLES, ListStyles, catalogue)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
