"""The style catalogue as the functions read it: every styles/<name>.jpg in the bucket, described
by the catalogue's manifest (styles/catalogue.json: title, artist, year), the styles it lists
first and in its order, others after them by name, titled after their name. LIST_STYLES answers
with it; PREVIEW_STYLES paints a photo in each of its styles, in the same order."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from stylejob import keys

from .settings import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Style:
    name: str
    key: str  # styles/<name>.jpg
    etag: str  # the picture's version: what a style vector computed from it is kept by
    title: str
    artist: str | None
    year: str | None


def title_of(name: str) -> str:
    """ "stained-glass" -> "Stained Glass", as the pages title a style they know only by name."""
    return " ".join(word.capitalize() for word in name.split("-"))


def described(s3: Any) -> dict[str, dict[str, Any]]:
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
        log.exception("the catalogue's manifest is not usable")
    return {}


def styles(s3: Any) -> list[Style]:
    """Every style of the catalogue, in its order."""
    about = described(s3)
    found = []
    # a listing page holds at most 1000 keys
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.images_bucket, Prefix="styles/"):
        for item in page.get("Contents", []):
            # anything that is not styles/<name>.jpg (a README, a folder marker, a PNG) is not a style
            if (name := keys.style_name(item["Key"])) is not None:
                details = about.get(name, {"title": title_of(name), "artist": None, "year": None})
                found.append(Style(name=name, key=item["Key"], etag=str(item.get("ETag", "")), **details))
    order = {name: position for position, name in enumerate(about)}
    found.sort(key=lambda style: (order.get(style.name, len(order)), style.name))
    return found
