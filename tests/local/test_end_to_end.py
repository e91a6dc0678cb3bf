"""The whole system, started by the README's command (`python -m stylelocal`), used by real
WebSocket clients: jobs from a data URL and from a presigned upload, the public broadcast, a
private job kept private, a failing worker, a client that leaves mid-job, Ctrl-C, and a gallery
kept across restarts. The worker really runs (64 px, preview preset) on this machine's CPU."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from .stack_process import Running, data_url, photo_png, running_stack

ACCEPTED = "TRANSFER_STYLE_ACCEPTED"
JOB_SECONDS = 180  # a 64 px preview job in a cold worker process on 2 busy cores, with margin
OPTIONS = {"preset": "preview", "size": 64}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


class Client:
    """A WebSocket client that keeps every message it receives."""

    def __init__(self, ws_url: str) -> None:
        self._resources = contextlib.ExitStack()  # websockets wants its connections entered
        self.ws: ClientConnection = self._resources.enter_context(connect(ws_url, max_size=None))
        self.seen: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any]) -> None:
        self.ws.send(json.dumps(body))

    def wait_for(self, predicate, timeout: float = 30, start: int = 0) -> dict[str, Any]:
        """The first message from the `start`th on that satisfies `predicate`, waiting for it."""
        for message in self.seen[start:]:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                break
            self.seen.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no such message within {timeout} s; got {[m['event'] for m in self.seen]}")

    def event(self, name: str, timeout: float = 30, start: int = 0) -> dict[str, Any]:
        return self.wait_for(lambda m: m["event"] in (name, "ERROR"), timeout, start)

    def ask(self, body: dict[str, Any], answer: str) -> dict[str, Any]:
        """Send a request and return its answer's data: only a message after the request counts."""
        start = len(self.seen)
        self.send(body)
        message = self.event(answer, start=start)
        assert message["event"] == answer, message
        return message["data"]

    def close(self) -> None:
        self._resources.close()


@pytest.fixture
def clients(stack: Running) -> Iterator[Any]:
    opened: list[Client] = []

    def open_client() -> Client:
        opened.append(Client(stack.ws_url))
        return opened[-1]

    yield open_client
    for client in opened:
        client.close()


def image_at(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def test_catalogue_is_seeded(stack: Running, clients) -> None:
    styles = clients().ask({"action": "LIST_STYLES"}, "STYLES")["styles"]
    names = [style["name"] for style in styles]
    assert {"swirls", "stained-glass"} <= set(names)
    assert styles[0] == {
        "name": "starry-night",
        "previewUrl": f"{stack.url}/styles/starry-night.jpg",
        "title": "The Starry Night",
        "artist": "Vincent van Gogh",
        "year": "1889",
    }
    assert image_at(styles[0]["previewUrl"]).format == "JPEG"


def test_public_job_from_a_data_url(stack: Running, clients) -> None:
    requester, watcher = clients(), clients()
    watcher.ask({"action": "LIST_STYLES"}, "STYLES")  # connected and answered before the job
    job = requester.ask(
        {"action": "TRANSFER_STYLE", "image": data_url(photo_png(96, 64)), "style": "swirls",
         "isPrivate": False, "options": OPTIONS},
        "TRANSFER_STYLE_ACCEPTED",
    )  # fmt: skip
    done = requester.event(f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", JOB_SECONDS)
    result = image_at(done["data"]["result"])
    assert (result.format, result.size) == ("JPEG", (64, 43))
    # what the requester saw, in order: accepted, the preview, progress, the result
    seen = [m["event"].split("::")[0] for m in requester.seen if m["event"] == ACCEPTED or job["jobId"] in m["event"]]
    assert seen[:3] == [ACCEPTED, "TRANSFER_STYLE_PREVIEW", "TRANSFER_STYLE_PROGRESS"], seen
    assert seen[-1] == "TRANSFER_STYLE_COMPLETED"
    assert set(seen[2:-1]) == {"TRANSFER_STYLE_PROGRESS"}
    preview = requester.event(f"TRANSFER_STYLE_PREVIEW::{job['jobId']}")["data"]["preview"]
    assert preview == f"{stack.url}/public/preview/{job['jobId']}.jpg"
    assert image_at(preview).size == (64, 43)
    broadcast = watcher.wait_for(lambda m: m["event"] == "TRANSFER_STYLE_COMPLETED", 30)
    assert broadcast["data"]["jobId"] == job["jobId"]
    assert broadcast["data"]["result"] == done["data"]["result"]
    listed = requester.ask({"action": "LIST_IMAGES"}, "IMAGES")["images"]
    assert job["jobId"] in [image["jobId"] for image in listed]


def test_private_job_from_a_presigned_upload(stack: Running, clients) -> None:
    requester, watcher = clients(), clients()
    png = photo_png(120, 80)
    upload = requester.ask({"action": "REQUEST_UPLOAD", "contentType": "image/png", "size": len(png)}, "UPLOAD_READY")
    posted = requests.post(upload["url"], data=upload["fields"], files={"file": ("photo.png", png)}, timeout=10)
    assert posted.status_code in (200, 204), posted.text
    job = requester.ask(
        {"action": "TRANSFER_STYLE", "image": upload["key"], "style": "stained-glass", "isPrivate": True,
         "options": OPTIONS},
        "TRANSFER_STYLE_ACCEPTED",
    )  # fmt: skip
    done = requester.event(f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", JOB_SECONDS)
    url = done["data"]["result"]
    assert "X-Amz-Signature=" in url  # presigned, only for this client
    assert image_at(url).size == (64, 43)
    preview = requester.event(f"TRANSFER_STYLE_PREVIEW::{job['jobId']}")["data"]["preview"]
    assert "X-Amz-Signature=" in preview
    assert f"/private/preview/{job['jobId']}.jpg" in preview
    assert image_at(preview).format == "JPEG"
    assert requests.get(f"{stack.url}/private/preview/{job['jobId']}.jpg", timeout=5).status_code == 404
    time.sleep(2)  # give a wrong broadcast time to arrive
    watcher.ask({"action": "LIST_STYLES"}, "STYLES")
    assert not any(job["jobId"] in json.dumps(m) for m in watcher.seen)
    listed = watcher.ask({"action": "LIST_IMAGES", "limit": 50}, "IMAGES")["images"]
    assert job["jobId"] not in [image["jobId"] for image in listed]
    private_path = url.split("?")[0].split("/", 3)[-1]
    assert requests.get(f"{stack.url}/{private_path.split('/', 1)[-1]}", timeout=5).status_code == 404


def test_a_failed_preview_leaves_the_job_to_finish(stack: Running, clients) -> None:
    client = clients()
    # 192x60 at 64 px is 64x20: thick enough for the engine (16 px), too thin for the preview's
    # network (32 px), so the preview fails for real and the painting must come all the same
    job = client.ask(
        {"action": "TRANSFER_STYLE", "image": data_url(photo_png(192, 60)), "style": "swirls", "isPrivate": True,
         "options": OPTIONS},
        "TRANSFER_STYLE_ACCEPTED",
    )  # fmt: skip
    done = client.event(f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", JOB_SECONDS)
    assert image_at(done["data"]["result"]).size == (64, 20)
    assert not any(m["event"] == f"TRANSFER_STYLE_PREVIEW::{job['jobId']}" for m in client.seen)
    state = client.ask({"action": "GET_JOB", "jobId": job["jobId"], "jobToken": job["jobToken"]}, "JOB")
    assert state["status"] == "SUCCEEDED"
    assert "preview" not in state


def test_failing_worker_reaches_the_client(stack: Running, clients) -> None:
    client = clients()
    png = photo_png(96, 64)
    truncated = png[: len(png) // 2]  # a PNG's signature, so the service takes it; the worker cannot decode it
    job = client.ask(
        {"action": "TRANSFER_STYLE", "image": data_url(truncated), "style": "swirls", "isPrivate": False,
         "options": OPTIONS},
        "TRANSFER_STYLE_ACCEPTED",
    )  # fmt: skip
    failed = client.event(f"TRANSFER_STYLE_FAILED::{job['jobId']}", JOB_SECONDS)
    assert "damaged or truncated" in failed["data"]["error"]
    state = client.ask({"action": "GET_JOB", "jobId": job["jobId"], "jobToken": job["jobToken"]}, "JOB")
    assert state["status"] == "FAILED"


def test_a_client_that_leaves_mid_job_still_has_its_result(stack: Running, clients) -> None:
    leaving = clients()
    job = leaving.ask(
        {"action": "TRANSFER_STYLE", "image": data_url(photo_png(96, 64)), "style": "swirls", "isPrivate": True,
         "options": OPTIONS},
        "TRANSFER_STYLE_ACCEPTED",
    )  # fmt: skip
    leaving.close()
    back = clients()  # a new connection, as after a reload
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        state = back.ask({"action": "GET_JOB", "jobId": job["jobId"], "jobToken": job["jobToken"]}, "JOB")
        if state["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert state["status"] == "SUCCEEDED", state
    assert image_at(state["result"]).size == (64, 43)
    assert "Traceback" not in stack.log.read_text()


def test_gallery_is_kept_across_restarts(tmp_path: Path, clients) -> None:
    data = tmp_path / "data"
    first = Running(tmp_path, data)
    try:
        client = Client(first.ws_url)
        job = client.ask(
            {"action": "TRANSFER_STYLE", "image": data_url(photo_png(96, 64)), "style": "waves", "isPrivate": False,
             "options": OPTIONS},
            "TRANSFER_STYLE_ACCEPTED",
        )  # fmt: skip
        client.event(f"TRANSFER_STYLE_COMPLETED::{job['jobId']}", JOB_SECONDS)
        client.close()
    finally:
        assert first.stop() == 0
    second = Running(tmp_path, data)
    try:
        client = Client(second.ws_url)
        listed = client.ask({"action": "LIST_IMAGES"}, "IMAGES")["images"]
        assert [image["jobId"] for image in listed] == [job["jobId"]]
        assert image_at(listed[0]["result"]).size == (64, 43)
        client.close()
    finally:
        assert second.stop() == 0
