"""PREVIEW_STYLES: a photo in every style of the catalogue (or those named), painted by the
instant preview's network, before the user commits to a job. No GPU, no job, nothing stored.

Each preview goes to the requesting connection alone, as it is made: STYLE_PREVIEW {style,
preview} (a JPEG data URL of at most PREVIEW_SIDE px), and the request's answer,
STYLE_PREVIEWS_DONE, follows the last. A preview is never stored, listed or broadcast, whether
the photo is meant to be public or private: it lives only in the answer to its requester.

A painting's style vector is the same for every photo, so the catalogue's are computed once per
process (at start, and again only for a picture whose ETag changed), never per request; a photo's
own vector (strength below full moves towards it) is kept by the photo's digest for the
requests that re-render one style as a slider moves. Limited per connection and per address,
like TRANSFER_STYLE, on counters of its own (styleservice.limits.preview_limits)."""

from __future__ import annotations

import base64
import contextlib
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from stylejob import keys
from styleservice import catalogue, preview
from styleservice.connections_api import ConnectionsApi
from styleservice.limits import RateLimits, preview_limits
from styleservice.protocol import (
    MAX_PREVIEW_STYLES,
    PREVIEW_STYLES,
    STYLE_PREVIEW,
    STYLE_PREVIEWS_DONE,
    PreviewStyles,
    ProtocolError,
    decode_data_url,
    message,
    printable,
)
from styleservice.routes import connection_id, route
from styleservice.settings import settings
from styleservice.storage import s3_client
from styleservice.uploads import read_upload

logger = Logger()
tracer = Tracer()
metrics = Metrics()
s3 = s3_client()
rate_limits = RateLimits()
vectors = preview.StyleVectors()  # the catalogue's (and uploads'), by key and ETag
own_vectors = preview.StyleVectors(most=64)  # photos' own, by digest: a slider re-renders one photo

PREVIEW_SIDE = 256  # long side of each preview: a style tile, not a result
JPEG_QUALITY = 80
IMAGE_FORMS = "a base64 data URL (data:image/jpeg;base64,...) or a key from REQUEST_UPLOAD (uploads/<32 hex>.jpg)"
STYLE_FORMS = "a style name from LIST_STYLES or a key from REQUEST_UPLOAD (uploads/<32 hex>.jpg)"
BUSY = "the previews could not be made; please try again"


def warm() -> None:
    """The network and the catalogue's vectors, in the init phase: the first request pays for
    neither. A failure here is only logged: the first request computes what is missing."""
    try:
        preview.warm()
        for style in catalogue.styles(s3):
            with contextlib.suppress(preview.PreviewError):  # an unreadable picture: said per request
                vector_of(style.key, style.etag)
    except Exception:
        logger.exception("the catalogue's style vectors were not made ahead")


def vector_of(key: str, etag: str, data: bytes | None = None, what: str = "style image") -> Any:
    found = vectors.get(key, etag)
    if found is None:
        if data is None:
            data = s3.get_object(Bucket=settings.images_bucket, Key=key, IfMatch=etag)["Body"].read()
        found = vectors.put(key, etag, preview.style_vector(data, what))
    return found


def photo_of(value: str) -> bytes:
    if value.startswith("data:"):
        return decode_data_url(value)[1]
    if keys.is_upload_key(value):
        return read_upload(s3, value, "image").data
    raise ProtocolError(f"image must be {IMAGE_FORMS}")


def styles_of(request: PreviewStyles) -> tuple[list[tuple[str, Any]], list[str]]:
    """(name as the answer names it, its vector) for every style asked for, in order (the
    catalogue's order without a list), and the catalogue's styles whose picture the network
    cannot read (skipped: the service's fault, not the client's). Refuses (ProtocolError) a name
    or key that names nothing usable."""
    listed = catalogue.styles(s3)
    known = {style.name: style for style in listed}
    asked = [style.name for style in listed[:MAX_PREVIEW_STYLES]] if request.styles is None else request.styles
    found, skipped = [], []
    for place, value in enumerate(asked):
        field = f"styles.{place}"
        if keys.STYLE_NAME.match(value):
            if value not in known:
                raise ProtocolError(f"unknown style {printable(value)!r}: LIST_STYLES gives the catalogue")
            try:
                found.append((value, vector_of(known[value].key, known[value].etag)))
            except preview.PreviewError:
                logger.exception("a catalogue picture the preview network cannot read", extra={"style": value})
                skipped.append(value)
        elif keys.is_upload_key(value):
            upload = read_upload(s3, value, field)
            try:
                found.append((value, vector_of(value, upload.etag, upload.data)))
            except preview.PreviewError as unusable:
                raise ProtocolError(f"{field}: {unusable}") from None
        else:
            raise ProtocolError(f"{field} must be {STYLE_FORMS}")
    return found, skipped


def data_url(image: Any) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(preview.jpeg(image, JPEG_QUALITY)).decode()


def paint_all(request: PreviewStyles, event: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    photo_data = photo_of(request.image)
    try:
        content = preview.photo(photo_data, PREVIEW_SIDE)
    except preview.PreviewError as unusable:
        raise ProtocolError(f"image: {unusable}") from None
    styles, skipped = styles_of(request)
    if request.style_blend is not None and skipped:
        raise ProtocolError(f"the preview cannot read the picture of {skipped[0]!r}; please try another style")
    source_ip = event["requestContext"].get("identity", {}).get("sourceIp", "")
    try:
        rate_limits.take_all(preview_limits(connection_id(event), source_ip))
    except (ClientError, BotoCoreError):  # a limit must hold when it cannot be read
        logger.exception("the limits could not be checked")
        raise ProtocolError(BUSY) from None
    own = None
    if preview.strength_for(request.strength) < 1.0:  # the photo's own vector, kept for the next slider move
        digest = preview.digest(photo_data)
        own = own_vectors.get(digest, str(content.size))
        if own is None:
            own = own_vectors.put(digest, str(content.size), preview.image_vector(content))
    tag = {"requestId": request.request_id} if request.request_id is not None else {}
    if request.style_blend is not None:  # one picture of the blend, named by its styles
        mixed = preview.blended([vector for _, vector in styles], request.style_blend)
        styles = [([name for name, _ in styles], mixed)]
    api, sent = ConnectionsApi(), 0
    for name, vector in styles:
        painted = preview.paint(
            content, vector, strength=request.strength, preserve_colors=request.preserve_colors, own=own
        )
        if not api.send(
            connection_id(event), message(STYLE_PREVIEW, {**tag, "style": name, "preview": data_url(painted)})
        ):
            break  # the requester left: paint nothing more for nobody
        sent += 1
        if sent == 1:
            metrics.add_metric(
                name="StylePreviewFirstSeconds", unit=MetricUnit.Seconds, value=time.perf_counter() - started
            )
    seconds = round(time.perf_counter() - started, 3)
    metrics.add_metric(name="StylePreviewsSeconds", unit=MetricUnit.Seconds, value=seconds)
    logger.info("style previews made", extra={"count": sent, "seconds": seconds, "size": list(content.size)})
    return message(STYLE_PREVIEWS_DONE, {**tag, "count": sent, "skipped": skipped})


answer = route(PREVIEW_STYLES, PreviewStyles, paint_all)
warm()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
