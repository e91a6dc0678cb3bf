"""GET_SERVICE: what the service offers and how fast it paints, for the request page's choice of
size and its estimate of a job's time.

The device is what the workers last measured (workerpool's "#pace" item), or until one has,
WORKER_DEVICE from the template (the workers run on GPU instances: "cuda"; the local stack sets
what its workers use). The sizes are those the device paints well (stylejob.sizes), each with the
preset and the scales a page needs to work out a photo's megapixel-iterations; the pace is the
seconds per megapixel-iteration of the last painting, and a worker's start is added when none is
up. Nothing here is a constant of how fast a device is: with no measurement yet, `pace` is null
and the page says that the first painting will tell."""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from stylejob import sizes
from stylejob.job import MAX_SIZE, MIN_SIZE
from styleservice.protocol import GET_SERVICE, SERVICE, GetService, message
from styleservice.routes import route
from styleservice.settings import settings
from workerpool import BUSY, IDLE, Registry

logger = Logger()
tracer = Tracer()
registry = Registry(settings.workers_table, boto3.client("dynamodb"))


def device_of(name: object) -> sizes.Device | None:
    return next((device for device in sizes.DEVICES if device == name), None)


def describe(request: GetService, event: dict[str, Any]) -> dict[str, Any]:
    state = registry.state()
    now = time.time()
    measured = state.pace or {}
    device = device_of(measured.get("device")) or device_of(settings.worker_device) or "cuda"
    pace = measured.get("secondsPerMegapixelIteration")
    up = state.count(IDLE, now) + state.count(BUSY, now)
    data: dict[str, Any] = {
        "device": device,
        "deviceMeasured": "device" in measured,  # false: the template's WORKER_DEVICE, nobody has painted yet
        "sizes": [offer.message() for offer in sizes.offers(device)],
        "defaultSize": sizes.DEFAULT_SIZE[device],
        "minSize": MIN_SIZE,
        "maxSize": MAX_SIZE,
        "pace": None,
        "startSeconds": measured.get("startSeconds"),
        "workersUp": up,
        "waiting": max(0, state.waiting),
    }
    if pace is not None and pace > 0:
        data["pace"] = {
            "secondsPerMegapixelIteration": pace,
            "measuredAt": int(measured.get("measuredAt", now) * 1000),
        }
    return message(SERVICE, data)


answer = route(GET_SERVICE, GetService, describe)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer(event, context)
