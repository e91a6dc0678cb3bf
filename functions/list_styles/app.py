"""LIST_STYLES: the style catalogue, i.e. every styles/<name>.jpg in the bucket, with the public
URL of its picture and, from the catalogue's manifest (styles/catalogue.json, uploaded with the
pictures from the repository's catalogue/), its title, artist and year. Styles the manifest lists
come first, in its order; others follow by name, titled after their name."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from stylejob import keys
from styleservice.protocol import LIST_STYLES, STYLES, ListStyles, message
from styleservice.routes import route
from styleservice.settings import settings
from styleservice.storage import public_url, s3_client

logger = Logger()
tracer = Tracer()
s3 = s3_client()


def described() -> dict[str, dict[str, Any]]:
    """name -> {title, artist, year} from the manifest; empty when there is none or it is unusable
    (the pictures still make a catalogue)."""
    try:
        body = s3.get_object(Bucket=settings.images_bucket, Key=keys.CATALOGUE_KEY)["Body"].read()
        entries = json.loads(body)["styles"]
        return {
            str(entry["name"]): {
                "title": str(entry["title"]),
                "artist": str(entry["artist"]) if entry.get("artist") else None,
                "year": str(entry["year"]) if entry.get("year") else None,
            }
            for entry in entries
        }
    except ClientError as failure:
        if failure.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "AccessDenied", "403"):
            raise
    except (ValueError, KeyError, TypeError):
        logger.exception("the catalogue's manifest is not usable")
    return {}


def title_of(name: str) -> str:
    """ "stained-glass" -> "Stained Glass", as the pages title a style they know only by name."""
    return " ".join(word.capitalize() for word in name.split("-"))


def catalogue(request: ListStyles, event: dict[str, Any]) -> dict[str, Any]:
    about = described()
    styles = []
    # a listing page holds at most 1000 keys
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.images_bucket, Prefix="styles/"):
        for item in page.get("Contents", []):
            # anything that is not styles/<name>.jpg (a README, a folder marker, a PNG) is not a style
            if (name := keys.style_name(item["Key"])) is not None:
                details = about.get(name, {"title": title_of(name), "artist": None, "year": None})
                styles.append({"name": name, "previewUrl": public_url(item["Key"]), **details})
    order = {name: position for position, name in enumerate(about)}
    styles.sort(key=lambda style: (order.get(style["name"], len(order)), style["name"]))
    return message(STYLES, {"styles": styles})


answer = route(LIST_STYLES, ListStyles, catalogue)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
