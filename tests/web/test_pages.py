"""The pages (web/) in a real browser: Playwright drives Debian's Chromium, headless, against the
local stack as its users start it (`python -m stylelocal`, tests/local/stack_process.py), where the
worker really runs on this machine's CPU. The request page is opened with `?size=64`, which it
sends as options.size, so a job takes seconds.

Every WebSocket of a page goes through a `Relay` (Playwright's WebSocket routing): it records each
message both ways, and drops a connection the way API Gateway does (close 1001, "Going away"), or
keeps the page from reconnecting for a while. A few tests put a scripted service behind it instead
of the stack (`mock`), for what the real one does not do on demand: a job that fails, a connection
lost mid-request, a Feed that starts empty and rotates.

Chromium must be at /usr/bin/chromium (`make test` installs it): without it these tests fail."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect, sync_playwright
from stylejob import sizes

from ..local.stack_process import Running, photo_png, running_stack
from .browser import launch

JOB_MS = 180_000  # a 64 px preview job in a cold worker process on 2 busy cores, with margin
REQUEST = "/index.html?size=64"
FEED = "/feed.html"

Mock = Callable[[WebSocketRoute, dict[str, Any]], None]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        try:
            chromium = launch(playwright)
        except FileNotFoundError as missing:
            pytest.fail(str(missing))
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


class Relay:
    """A page and its WebSockets: each routed to the stack (or to `mock`), its messages recorded."""

    def __init__(self, page: Page, mock: Mock | None = None) -> None:
        self.page = page
        self.mock = mock
        self.connections: list[WebSocketRoute] = []
        self.servers: list[WebSocketRoute | None] = []  # the stack's side of each
        self.sent: list[tuple[int, dict[str, Any]]] = []  # (connection number, message)
        self.received: list[tuple[int, dict[str, Any]]] = []
        self.blocked = False
        self.errors: list[str] = []
        self.refused: list[str] = []  # what the page's Content-Security-Policy blocked (Chromium says so)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda m: self.refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.route_web_socket(re.compile(r".*"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        if self.blocked:  # the service cannot be reached
            ws.close(code=1001, reason="Going away")
            return
        number = len(self.connections)
        self.connections.append(ws)

        def up(text: str | bytes) -> None:
            message = json.loads(text)
            self.sent.append((number, message))
            if server:
                server.send(text)
            else:
                self.mock(ws, message)

        def down(text: str | bytes) -> None:
            self.received.append((number, json.loads(text)))
            ws.send(text)

        server = None if self.mock else ws.connect_to_server()
        if server:
            server.on_message(down)
        self.servers.append(server)
        ws.on_message(up)

    def drop(self) -> None:
        """Close the page's current connection as API Gateway does (idle 10 minutes, or 2 hours old)."""
        self.connections[-1].close(code=1001, reason="Going away")
        if server := self.servers[-1]:
            server.close()

    def push(self, event: str, data: dict[str, Any]) -> None:
        """(mock) A message from the service on the current connection."""
        message = {"event": event, "data": data}
        self.received.append((len(self.connections) - 1, message))
        self.connections[-1].send(json.dumps(message))

    def actions(self, name: str | None = None) -> list[dict[str, Any]]:
        return [m for _, m in self.sent if name is None or m.get("action") == name]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m["data"] for _, m in self.received if m.get("event") == name]


@pytest.fixture
def pages(stack: Running, context: BrowserContext) -> Iterator[Callable[..., Relay]]:
    """pages(path, mock=None): a new page at `path` of the stack, through a Relay."""
    opened: list[Relay] = []

    def open_page(path: str, mock: Mock | None = None) -> Relay:
        relay = Relay(context.new_page(), mock)
        opened.append(relay)
        relay.page.goto(stack.url + path)
        return relay

    yield open_page
    for relay in opened:
        assert relay.errors == [], relay.errors  # no uncaught error in the page's scripts
        assert relay.refused == [], relay.refused  # and nothing the security policy had to block


def noisy_png(width: int, height: int) -> bytes:
    """A photo-like PNG too large for a data URL (> 30 KB): it goes through REQUEST_UPLOAD."""
    photo = np.asarray(Image.open(io.BytesIO(photo_png(width, height))), dtype=np.int16)
    noise = np.random.default_rng(0).integers(-12, 13, photo.shape)
    buffer = io.BytesIO()
    Image.fromarray((photo + noise).clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def ready(request: Relay) -> Page:
    page = request.page
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    expect(page.locator(".style[data-name]").first).to_be_visible()
    return page


def choose(page: Page, png: bytes, name: str = "photo.png") -> None:
    page.set_input_files("#photo", files=[{"name": name, "mimeType": "image/png", "buffer": png}])
    expect(page.locator("#drop")).to_have_attribute("data-state", "chosen")


def submit(page: Page, *, style: str = "swirls") -> str:
    """Pick `style`, send, and return the job's id once the service accepted it."""
    page.click(f'.style[data-name="{style}"]')
    page.click("#submit")
    expect(page.locator("#job")).to_have_attribute("data-state", "running", timeout=30_000)
    job_id = page.locator("#job").get_attribute("data-job-id")
    assert job_id
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    return job_id


def painted(page: Page) -> str:
    """Waits for the result beside the photo; its URL."""
    expect(page.locator("#job")).to_have_attribute("data-state", "done", timeout=JOB_MS)
    after = page.locator("#after")
    expect(after).to_be_visible()
    assert after.evaluate("img => img.complete && img.naturalWidth") == 64
    url = after.get_attribute("src")
    assert url
    return url


def drop_file(page: Page, data: bytes, name: str, mime: str) -> None:
    """Drags a file onto the drop zone and lets go, as a person does from their file manager."""
    page.evaluate(
        """([base64, name, mime]) => {
            const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const target = document.querySelector("#drop .drop-target");
            for (const type of ["dragenter", "dragover"]) {
                target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
            window.dragStateShown = document.getElementById("drop").classList.contains("dragging");
            target.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )
    assert page.evaluate("window.dragStateShown") is True  # the zone showed it would take the file
    expect(page.locator("#drop")).not_to_have_class(re.compile(r"\bdragging\b"))


def feed_loaded(feed: Relay, loads: int = 1) -> Page:
    page = feed.page
    expect(page.locator("body")).to_have_attribute("data-state", "loaded")
    expect(page.locator("body")).to_have_attribute("data-loads", str(loads))
    return page


# --- against the stack, with the real worker ------------------------------------------------------


def test_a_photo_comes_back_painted_beside_it(pages) -> None:
    request = pages(REQUEST)
    page = ready(request)
    expect(page.locator(".style[data-name]")).to_have_count(10)  # the seeded catalogue, with thumbnails
    # every thumbnail loads (they load as the page lays them out, a moment after the tiles appear)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.style[data-name] img.art')]"
        ".every((img) => img.complete && img.naturalWidth > 0)",
        timeout=30_000,
    )
    # the paintings first, each with its title and artist
    assert page.locator(".style[data-name]").first.get_attribute("data-name") == "starry-night"
    expect(page.locator('.style[data-name="starry-night"] .title')).to_have_text("The Starry Night")
    expect(page.locator('.style[data-name="starry-night"] .artist')).to_have_text("Vincent van Gogh")
    expect(page.locator('.style[data-name="the-scream"] .artist')).to_have_text("Edvard Munch")

    # a photo over 30 KB goes through REQUEST_UPLOAD; strength and colours are sent as set
    big = noisy_png(400, 300)
    assert len(big) > 30 * 1024
    choose(page, big, "holiday.png")
    expect(page.locator("#photo-name")).to_have_text("holiday.png")
    page.locator("#strength").fill("0.8")
    expect(page.locator("#strength-value")).to_have_text("80%")
    page.check("#colors")
    job_id = submit(page, style="stained-glass")
    # the instant preview, marked as such, in the painting's place while the painting is made
    expect(page.locator("#sketch")).to_be_visible(timeout=30_000)
    expect(page.locator("#sketch-badge")).to_have_text("Preview")
    expect(page.locator("#after")).to_be_hidden()
    assert page.locator("#sketch").evaluate("img => img.complete && img.naturalWidth") == 64
    url = painted(page)
    expect(page.locator("#sketch")).to_be_hidden()  # the painting replaced it
    expect(page.locator("#sketch-badge")).to_be_hidden()
    # the order the page saw: accepted, preview, progress, completed
    mine = [m["event"] for _, m in request.received if m["event"] == "TRANSFER_STYLE_ACCEPTED" or job_id in m["event"]]
    assert mine[:3] == [
        "TRANSFER_STYLE_ACCEPTED",
        f"TRANSFER_STYLE_PREVIEW::{job_id}",
        f"TRANSFER_STYLE_PROGRESS::{job_id}",
    ]
    assert mine[-1] == f"TRANSFER_STYLE_COMPLETED::{job_id}"
    [preview] = request.events(f"TRANSFER_STYLE_PREVIEW::{job_id}")
    assert preview["preview"].endswith(f"/public/preview/{job_id}.jpg")

    [upload] = request.actions("REQUEST_UPLOAD")
    assert upload == {"action": "REQUEST_UPLOAD", "contentType": "image/png", "size": len(big)}
    [transfer] = request.actions("TRANSFER_STYLE")
    assert transfer["image"] == request.events("UPLOAD_READY")[0]["key"]
    assert (transfer["style"], transfer["isPrivate"]) == ("stained-glass", False)
    assert transfer["options"] == {"preset": "preview", "size": 64, "strength": 0.8, "preserveColors": True}
    assert request.events(f"TRANSFER_STYLE_PROGRESS::{job_id}"), "the progress bar was fed by progress events"
    assert request.events(f"TRANSFER_STYLE_COMPLETED::{job_id}") == [{"result": url}]

    # the result, beside the photo, with a download link
    before, after = page.locator("#before").bounding_box(), page.locator("#after").bounding_box()
    assert before
    assert after
    assert after["x"] >= before["x"] + before["width"]
    assert abs(after["y"] - before["y"]) < 2
    assert page.locator("#before").evaluate("img => img.complete && img.naturalWidth") == 400
    assert page.locator("#after").get_attribute("alt") == "Your photo, repainted in the Stained Glass style"
    download = page.locator("#download")
    expect(download).to_be_visible()
    assert download.get_attribute("href") == url
    assert download.get_attribute("download") == "repainted-stained-glass.jpg"
    got = requests.get(url, timeout=10)
    assert (got.status_code, got.headers["Content-Type"]) == (200, "image/jpeg")
    expect(page.locator("#see-feed")).to_be_visible()
    expect(page.locator("#submit")).to_be_enabled()

    # a small photo, dropped on the page, goes inline as a data URL
    drop_file(page, photo_png(96, 64), "small.png", "image/png")
    expect(page.locator("#drop")).to_have_attribute("data-state", "chosen")
    expect(page.locator("#photo-name")).to_have_text("small.png")
    second = submit(page, style="swirls")
    assert second != job_id
    expect(page.locator("#after")).to_be_hidden()  # the last result gave way to the new job
    painted(page)
    transfer = request.actions("TRANSFER_STYLE")[-1]
    assert transfer["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(transfer["image"].split(",", 1)[1]) == photo_png(96, 64)
    assert len(request.actions("REQUEST_UPLOAD")) == 1


def png_of(size: int, seed: int) -> bytes:
    """A PNG of exactly `size` bytes: noise (which barely compresses), padded with a text chunk."""
    from PIL.PngImagePlugin import PngInfo

    noise = np.random.default_rng(seed).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    padding = 0
    while True:
        info = PngInfo()
        info.add_text("pad", "x" * padding)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, "PNG", pnginfo=info, compress_level=9)
        if len(buffer.getvalue()) == size:
            return buffer.getvalue()
        assert len(buffer.getvalue()) < size, "the noise alone is larger than asked"
        padding += size - len(buffer.getvalue())


def test_an_own_style_and_a_photo_each_just_under_the_inline_limit_keep_every_message_in_one_frame(pages) -> None:
    """Each image's data URL is just under 30 KB (the page's old rule for inlining), about 59 KB
    together in one TRANSFER_STYLE: over the 32 KB frame that API Gateway (and the local gateway)
    allows, which closes the connection (1009) and starts nothing. The own style goes to S3 first
    (the protocol takes a style only as a catalogue name or an upload's key), and the photo inline
    only while the whole message fits in one frame."""
    request = pages(REQUEST)
    page = ready(request)
    photo, style = png_of(22_400, seed=1), png_of(22_350, seed=2)  # the old rule: size * 1.37 < 30 KB
    for image in (photo, style):
        assert 29 * 1024 < len("data:image/png;base64,") + len(base64.b64encode(image)) < 30 * 1024
    choose(page, photo, "photo.png")
    page.set_input_files("#own-style", files=[{"name": "mine.png", "mimeType": "image/png", "buffer": style}])
    expect(page.locator("#own-tile")).to_be_visible()
    page.click("#submit")
    expect(page.locator("#job")).to_have_attribute("data-state", "running", timeout=30_000)
    painted(page)
    [upload] = request.actions("REQUEST_UPLOAD")  # the style went to S3 first ...
    assert upload == {"action": "REQUEST_UPLOAD", "contentType": "image/png", "size": len(style)}
    [transfer] = request.actions("TRANSFER_STYLE")
    assert transfer["style"] == request.events("UPLOAD_READY")[0]["key"]
    assert base64.b64decode(transfer["image"].split(",", 1)[1]) == photo  # ... and the photo fits inline

    # a photo whose data URL alone fits in a frame, but not with the rest of the message: uploaded
    alone = png_of(24_510, seed=3)
    data_url = len("data:image/png;base64,") + len(base64.b64encode(alone))
    inline = {**transfer, "style": "swirls", "isPrivate": True, "image": "x" * data_url}  # what it would send
    assert data_url < 32 * 1024 < len(json.dumps(inline, separators=(",", ":")))
    choose(page, alone, "photo.png")
    page.check("#private")  # kept out of the Feed, which other tests watch
    submit(page, style="swirls")
    assert request.actions("REQUEST_UPLOAD")[-1]["size"] == len(alone)
    assert request.actions("TRANSFER_STYLE")[-1]["image"] == request.events("UPLOAD_READY")[-1]["key"]

    for _, message in request.sent:  # every whole message fitted in one frame
        assert len(json.dumps(message, separators=(",", ":")).encode()) <= 32 * 1024
    assert len(request.connections) == 1  # and none was closed for a frame too large


def test_the_feed_shows_a_new_public_result_live(pages) -> None:
    feed = pages(FEED)
    feed_page = feed_loaded(feed)
    feed_page.evaluate("window.sameDocument = true")  # gone if the page reloads
    request = pages(REQUEST)
    page = ready(request)
    choose(page, photo_png(120, 80))
    job_id = submit(page, style="waves")
    url = painted(page)

    item = feed_page.locator(f'#gallery li[data-job-id="{job_id}"]')
    expect(item).to_be_visible(timeout=30_000)
    assert feed_page.evaluate("window.sameDocument") is True
    assert [image["jobId"] for image in feed.events("TRANSFER_STYLE_COMPLETED")] == [job_id]  # the broadcast
    assert len(feed.actions("LIST_IMAGES")) == 1
    assert item.locator("img").nth(1).get_attribute("src") == url
    assert item.locator("img").nth(0).get_attribute("alt") == "A photo"
    assert item.locator("img").nth(1).get_attribute("alt") == "The photo, repainted in the Waves style"
    expect(feed_page.locator("#gallery li").first).to_have_attribute("data-job-id", job_id)  # newest first
    # the newcomer is featured large at once, marked new
    expect(feed_page.locator("#featured")).to_be_visible()
    expect(feed_page.locator("#featured-slide")).to_have_attribute("data-job-id", job_id)
    expect(feed_page.locator("#featured-after")).to_have_attribute("src", url)
    expect(feed_page.locator("#featured-new")).to_be_visible()
    expect(feed_page.locator("#empty")).to_be_hidden()


def test_a_private_result_never_reaches_the_feed(pages) -> None:
    feed = pages(FEED)
    feed_page = feed_loaded(feed)
    request = pages(REQUEST)
    page = ready(request)
    choose(page, photo_png(120, 80))
    page.check("#private")
    job_id = submit(page)
    url = painted(page)
    assert "X-Amz-Signature=" in url  # a presigned link, for this page only
    assert request.actions("TRANSFER_STYLE")[0]["isPrivate"] is True
    expect(page.locator("#see-feed")).to_be_hidden()
    expect(page.locator("#download")).to_be_visible()

    time.sleep(3)  # time for a wrong broadcast to arrive
    assert feed_page.locator(f'[data-job-id="{job_id}"]').count() == 0
    assert job_id not in json.dumps(feed.received)
    feed_page.reload()
    feed_page = feed_loaded(feed)
    assert feed_page.locator(f'[data-job-id="{job_id}"]').count() == 0
    assert job_id not in json.dumps(feed.events("IMAGES"))


def test_a_file_that_is_not_a_photo_is_refused_before_anything_is_sent(pages) -> None:
    request = pages(REQUEST)
    page = ready(request)
    error = page.locator("#photo-error")

    page.set_input_files("#photo", files=[{"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": b"hello " * 500}])
    expect(error).to_be_visible()
    expect(error).to_contain_text("“photo.jpg” is not a picture this page can read")
    expect(page.locator("#drop")).to_have_attribute("data-state", "invalid")
    expect(page.locator("#photo")).to_have_attribute("aria-invalid", "true")
    page.click("#submit")
    expect(error).to_be_visible()
    expect(page.locator("#job")).to_have_attribute("data-state", "idle")

    drop_file(page, b"shopping list", "notes.txt", "text/plain")
    expect(error).to_have_text("“notes.txt” is not an image. Choose a photo: a JPEG, PNG or WebP file.")
    page.click("#submit")
    expect(page.locator("#job")).to_have_attribute("data-state", "idle")

    time.sleep(1)
    assert sorted(m["action"] for m in request.actions()) == ["GET_SERVICE", "LIST_STYLES"]  # no upload, no job
    choose(page, photo_png(96, 64))  # a good photo clears the error
    expect(error).to_be_hidden()


def test_a_dropped_connection_still_gets_the_result(pages) -> None:
    request = pages(REQUEST)
    page = ready(request)
    choose(page, photo_png(120, 80))
    job_id = submit(page)
    request.blocked = True
    request.drop()  # while the job runs: its pushes go to a connection that is gone
    expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#offline")).to_be_visible()
    expect(page.locator("#message")).to_contain_text("The connection was lost. Your job keeps running")
    expect(page.locator("#submit")).to_be_disabled()  # the job is not over
    request.blocked = False
    url = painted(page)  # reconnected by itself (0.5 s, then 1 s, 2 s, ... apart), then GET_JOB

    assert len(request.connections) >= 2, "the page reconnected by itself"
    token = request.events("TRANSFER_STYLE_ACCEPTED")[0]["jobToken"]
    recovered = [m for n, m in request.sent if n >= 1 and m["action"] == "GET_JOB"]
    assert recovered
    assert recovered[0] == {"action": "GET_JOB", "jobId": job_id, "jobToken": token}
    assert ("SUCCEEDED", url) in [(job["status"], job.get("result")) for job in request.events("JOB")]
    assert not [m for n, m in request.received if n >= 1 and m["event"].endswith(job_id)]  # no push got there
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    expect(page.locator("#offline")).to_be_hidden()


def test_a_reload_mid_job_still_shows_the_result(pages) -> None:
    request = pages(REQUEST)
    page = ready(request)
    choose(page, photo_png(120, 80))
    job_id = submit(page)
    page.reload()
    expect(page.locator("#job")).to_have_attribute("data-job-id", job_id)
    assert page.locator("#before").evaluate("img => img.naturalWidth") > 0  # the photo is shown again
    expect(page.locator("#sketch-badge")).to_have_text("Preview")  # GET_JOB brings the preview back
    painted(page)
    assert any(m["action"] == "GET_JOB" and m["jobId"] == job_id for n, m in request.sent)
    page.reload()  # a finished job is not asked for again
    ready(request)
    expect(page.locator("#job")).to_have_attribute("data-state", "idle")


def test_the_feed_fills_in_what_it_missed_while_disconnected(pages) -> None:
    feed = pages(FEED)
    feed_page = feed_loaded(feed)
    feed.blocked = True  # the next tries to connect fail
    feed.drop()
    expect(feed_page.locator("#status")).to_have_attribute("data-state", "reconnecting")
    expect(feed_page.locator("#offline")).to_be_visible()

    request = pages(REQUEST)
    page = ready(request)
    choose(page, photo_png(120, 80))
    job_id = submit(page, style="mosaic")
    painted(page)
    time.sleep(2)  # the broadcast went out while the Feed was away
    assert feed_page.locator(f'[data-job-id="{job_id}"]').count() == 0

    feed.blocked = False
    feed_page.evaluate("window.dispatchEvent(new Event('online'))")  # back online: reconnect now
    expect(feed_page.locator(f'#gallery li[data-job-id="{job_id}"]')).to_be_visible(timeout=15_000)
    feed_loaded(feed, loads=2)
    assert job_id not in json.dumps(feed.events("TRANSFER_STYLE_COMPLETED"))  # LIST_IMAGES brought it
    expect(feed_page.locator("#offline")).to_be_hidden()
    ids = [item.get_attribute("data-job-id") for item in feed_page.locator("#gallery li").all()]
    assert len(ids) == len(set(ids))  # nothing shown twice


def wait_for_actions(request: Relay, name: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The page's `name` requests, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while len(request.actions(name)) < count:
        assert time.monotonic() < deadline, f"{len(request.actions(name))} {name}, not {count}"
        request.page.wait_for_timeout(100)
    return request.actions(name)


def test_previews_a_blend_and_your_paintings_kept_shared_and_taken_back(stack: Running, context, pages) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    feed = pages(FEED)
    feed_page = feed_loaded(feed)
    request = pages(REQUEST)
    page = ready(request)

    # as soon as a photo is chosen, every tile shows it in its style, each as its preview arrives
    choose(page, photo_png(160, 120))
    expect(page.locator(".style[data-preview]")).to_have_count(10, timeout=30_000)
    [everything] = request.actions("PREVIEW_STYLES")
    assert set(everything) == {"action", "image", "requestId", "strength", "preserveColors"}  # no list: all of them
    assert everything["image"].startswith("data:image/jpeg;base64,")
    assert len(json.dumps(everything, separators=(",", ":")).encode()) <= 32 * 1024
    names = [tile.get_attribute("data-name") for tile in page.locator(".style[data-name]").all()]
    assert [p["style"] for p in request.events("STYLE_PREVIEW")] == names  # in the catalogue's order
    for shown in page.locator(".style[data-name] img.shown").all():
        assert shown.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [160, 120]
    expect(page.locator("#styles-hint")).to_have_text("Your photo in every style: pick the one you like.")

    # the chosen one is painted again as the strength slider moves (once for a drag) and the switch flips
    page.click('.style[data-name="the-scream"]')
    for value in ("0.3", "0.25", "0.2"):
        page.locator("#strength").fill(value)
    slider = wait_for_actions(request, "PREVIEW_STYLES", 2)[-1]
    assert (slider["styles"], slider["strength"], slider["preserveColors"]) == (["the-scream"], 0.2, False)
    page.check("#colors")
    switch = wait_for_actions(request, "PREVIEW_STYLES", 3)[-1]
    assert (switch["styles"], switch["strength"], switch["preserveColors"]) == (["the-scream"], 0.2, True)
    page.wait_for_timeout(1000)
    assert len(request.actions("PREVIEW_STYLES")) == 3

    # a second painting, mixed 70/30, previewed as a blend
    page.click("#blend-add")
    page.select_option("#second", "starry-night")
    expect(page.locator('.style[data-name="starry-night"]')).to_have_attribute("data-second", "")
    page.locator("#mix").fill("0.7")
    expect(page.locator("#mix-value")).to_have_text("70% The Scream · 30% The Starry Night")
    expect(page.locator("#blend-preview")).to_be_visible(timeout=15_000)
    deadline = time.monotonic() + 10
    while not [a for a in request.actions("PREVIEW_STYLES") if a.get("styleBlend") == [0.7, 0.3]]:
        assert time.monotonic() < deadline, request.actions("PREVIEW_STYLES")
        page.wait_for_timeout(100)
    [mixed] = [a for a in request.actions("PREVIEW_STYLES") if a.get("styleBlend") == [0.7, 0.3]]
    assert mixed["styles"] == ["the-scream", "starry-night"]
    page.click("#submit")
    expect(page.locator("#job")).to_have_attribute("data-state", "running", timeout=30_000)
    job_id = page.locator("#job").get_attribute("data-job-id")
    url = painted(page)
    [transfer] = request.actions("TRANSFER_STYLE")
    assert transfer["style"] == ["the-scream", "starry-night"]
    assert transfer["options"] == {"preset": "preview", "size": 64, "strength": 0.2, "preserveColors": True,
                                   "styleBlend": [0.7, 0.3]}  # fmt: skip
    name = "The Scream 70% · The Starry Night 30%"
    expect(page.locator("#after-caption")).to_have_text(f"After: {name}")

    # the time it takes, from the pace the worker measured on this very job
    expect(page.locator("#estimate")).to_have_attribute("data-seconds", re.compile(r"\d"))
    service = request.events("SERVICE")[-1]
    assert service["device"] == "cpu"
    start = 0 if service["workersUp"] else service["startSeconds"] or 0
    expected = sizes.estimate_seconds(sizes.offer(64, "preview"), 160, 120,
                                      service["pace"]["secondsPerMegapixelIteration"], start)  # fmt: skip
    expect(page.locator("#estimate")).to_have_attribute("data-seconds", f"{expected:.1f}")

    # the Feed shows it with its own page and a download
    item = feed_page.locator(f'#gallery li[data-job-id="{job_id}"]')
    expect(item).to_be_visible(timeout=30_000)
    expect(item.locator(".style-name")).to_have_text(name)
    permalink = f"{stack.url}/painting.html?id={job_id}"
    expect(item.locator(".tile-open")).to_have_attribute("href", permalink)
    expect(item.locator(".tile-download")).to_have_attribute("href", url)
    expect(feed_page.locator("#featured-download")).to_have_attribute("href", url)

    # "Your paintings" keeps it across a reload, and opens it again through GET_JOB
    page.reload()
    ready(request)
    entry = page.locator(f'#mine-list li[data-job-id="{job_id}"]')
    expect(entry.locator(".mine-title")).to_have_text(name)
    assert entry.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0
    entry.locator(".mine-open").click()
    expect(page.locator("#job")).to_have_attribute("data-state", "done")
    expect(page.locator("#after")).to_have_attribute("src", url)
    token = request.events("TRANSFER_STYLE_ACCEPTED")[0]["jobToken"]
    assert request.actions("GET_JOB")[-1] == {"action": "GET_JOB", "jobId": job_id, "jobToken": token}

    # shared: by the clipboard where there is no share sheet, by the share sheet where there is one
    page.click("#share")
    expect(page.locator("#share-note")).to_have_text("The link is copied: paste it anywhere.")
    assert page.evaluate("navigator.clipboard.readText()") == permalink
    page.evaluate("navigator.share = async (data) => { window.shared = data; }")
    page.click("#share")
    expect(page.locator("#share-note")).to_have_text("Shared.")
    assert page.evaluate("window.shared.url") == permalink

    # its permalink opens it alone: the pair, the paintings' titles and artists, a download
    alone = pages(f"/painting.html?id={job_id}")
    expect(alone.page.locator("body")).to_have_attribute("data-state", "shown")
    expect(alone.page.locator("#painting-title")).to_have_text(f"A photo in a blend of {name}")
    expect(alone.page.locator("#by")).to_contain_text("After Edvard Munch, 1893 and Vincent van Gogh, 1889")
    expect(alone.page.locator("#download")).to_have_attribute("href", url)
    assert alone.page.locator("#after").evaluate("img => img.complete && img.naturalWidth") == 64
    assert alone.page.locator("#before").evaluate("img => img.complete && img.naturalWidth") == 160

    # taken back: after a confirmation, from the list, the service, the Feed and its page, at once
    page.click("#delete")
    expect(page.locator("#confirm-delete")).to_be_visible()
    page.click("#delete-yes")
    expect(page.locator("#mine")).to_be_hidden()
    expect(page.locator("#job")).to_have_attribute("data-state", "idle")
    assert request.events("JOB_DELETED") == [{"jobId": job_id}]
    expect(feed_page.locator(f'#gallery li[data-job-id="{job_id}"]')).to_have_count(0)
    assert feed.events("IMAGE_REMOVED") == [{"jobId": job_id}]
    expect(alone.page.locator("body")).to_have_attribute("data-state", "gone")
    assert requests.get(url, timeout=10).status_code == 404

    # a private painting reopens with a fresh private link, and is never offered as a public one
    page.check("#private")
    choose(page, photo_png(120, 80))
    private_id = submit(page, style="swirls")
    first_link = painted(page)
    assert "X-Amz-Signature=" in first_link
    expect(page.locator("#share")).to_be_hidden()
    expect(page.locator("#permalink")).to_be_hidden()
    expect(page.locator("#delete")).to_be_visible()
    page.reload()
    ready(request)
    page.locator(f'#mine-list li[data-job-id="{private_id}"] .mine-open').click()
    expect(page.locator("#job")).to_have_attribute("data-state", "done")
    reopened = page.locator("#after").get_attribute("src")
    assert "X-Amz-Signature=" in reopened
    assert requests.get(reopened, timeout=10).status_code == 200
    expect(page.locator("#share")).to_be_hidden()
    assert private_id not in json.dumps(feed.received)


# --- against a scripted service -------------------------------------------------------------------


def public_image(stack: Running, job_id: str, style: str, completed_at: int) -> dict[str, Any]:
    return {
        "jobId": job_id,
        "input": f"{stack.url}/styles/waves.jpg",
        "result": f"{stack.url}/styles/{style}.jpg",
        "style": style,
        "completedAt": completed_at,
    }


def test_the_feed_starts_empty_then_rotates_its_results(stack: Running, pages) -> None:
    def service(ws: WebSocketRoute, message: dict[str, Any]) -> None:
        if message["action"] == "LIST_IMAGES":
            ws.send(json.dumps({"event": "IMAGES", "data": {"images": [], "cursor": None}}))

    feed = pages(FEED, mock=service)
    page = feed_loaded(feed)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#featured")).to_be_hidden()

    now = int(time.time() * 1000)
    first, second = "1" * 32, "2" * 32
    feed.push("TRANSFER_STYLE_COMPLETED", public_image(stack, first, "swirls", now - 1000))
    feed.push("TRANSFER_STYLE_COMPLETED", public_image(stack, first, "swirls", now - 1000))  # sent twice
    expect(page.locator("#gallery li")).to_have_count(1)
    expect(page.locator("#empty")).to_be_hidden()
    expect(page.locator("#featured-slide")).to_have_attribute("data-job-id", first)
    feed.push("TRANSFER_STYLE_COMPLETED", public_image(stack, second, "mosaic", now))
    expect(page.locator("#gallery li")).to_have_count(2)
    expect(page.locator("#gallery li").first).to_have_attribute("data-job-id", second)
    expect(page.locator("#featured-slide")).to_have_attribute("data-job-id", second)
    expect(page.locator("#featured-position")).to_have_text("1 of 2")

    # every 5 s the next pair is featured; a pause button stops it
    expect(page.locator("#featured-slide")).to_have_attribute("data-job-id", first, timeout=8000)
    page.click("#pause")
    expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
    page.mouse.move(0, 0)  # the pointer away: only the button holds the rotation
    time.sleep(6)
    expect(page.locator("#featured-slide")).to_have_attribute("data-job-id", first)
    page.click("#next")
    expect(page.locator("#featured-slide")).to_have_attribute("data-job-id", second)
    assert len(feed.actions("LIST_IMAGES")) == 1


def test_the_feed_uses_nothing_a_push_carries_before_checking_it(stack: Running, pages) -> None:
    """A broadcast (or a listing) whose jobId would break a selector, whose completedAt is no time,
    or whose images are not web addresses is left out, whole: no script error, no half-added tile,
    and the entries around it are shown in order."""
    now = int(time.time() * 1000)
    good = public_image(stack, "a" * 32, "swirls", now - 5000)
    hostile = [
        {**good, "jobId": 'x"] , li, [data-x="'},  # a selector, if put into querySelector as it is
        {**good, "jobId": "b" * 31 + "Z"},
        {**good, "jobId": "c" * 32, "completedAt": "soon"},
        {**good, "jobId": "d" * 32, "completedAt": 1e300},  # RangeError in Date's toISOString
        {**good, "jobId": "e" * 32, "completedAt": None},
        {**good, "jobId": "f" * 32, "input": "javascript:alert(1)"},
        {**good, "jobId": "0" * 32, "result": 42},
        {**good, "jobId": "1" * 32, "style": "<img src=x onerror=alert(1)>"},
        {key: value for key, value in good.items() if key != "style"} | {"jobId": "2" * 32},
        "not an object",
        None,
        [],
        7,
    ]

    def service(ws: WebSocketRoute, message: dict[str, Any]) -> None:
        if message["action"] == "LIST_IMAGES":  # a listing with the same among good ones
            images = [public_image(stack, "9" * 32, "mosaic", now - 9000), *hostile]
            ws.send(json.dumps({"event": "IMAGES", "data": {"images": images, "cursor": None}}))

    feed = pages(FEED, mock=service)
    page = feed_loaded(feed)
    expect(page.locator("#gallery li")).to_have_count(1)
    for entry in hostile:
        feed.push("TRANSFER_STYLE_COMPLETED", entry)
    feed.push("TRANSFER_STYLE_COMPLETED", good)
    expect(page.locator("#gallery li")).to_have_count(2)
    assert [li.get_attribute("data-job-id") for li in page.locator("#gallery li").all()] == ["a" * 32, "9" * 32]
    expect(page.locator("#featured-slide")).to_have_attribute("data-job-id", "a" * 32)
    assert page.locator("#gallery").inner_html().count("<img") == 4  # two pairs, nothing injected
    # the fixture checks that no script error happened on the way


def test_the_feed_names_a_painting_by_its_title_once_it_has_the_titles(stack: Running, pages) -> None:
    """As the request page does, the Feed names a painting by its title from LIST_STYLES ("The
    Starry Night"); until the titles come it names it from the style's name, then renames it."""
    job_id, now = "3" * 32, int(time.time() * 1000)

    def service(ws: WebSocketRoute, message: dict[str, Any]) -> None:
        if message["action"] == "LIST_IMAGES":  # LIST_STYLES is answered by the test, later
            images = [public_image(stack, job_id, "starry-night", now)]
            ws.send(json.dumps({"event": "IMAGES", "data": {"images": images, "cursor": None}}))

    feed = pages(FEED, mock=service)
    page = feed_loaded(feed)
    item = page.locator(f'#gallery li[data-job-id="{job_id}"]')
    expect(item.locator(".style-name")).to_have_text("Starry Night")
    expect(page.locator("#featured-caption")).to_have_text("After: Starry Night · just now")
    assert len(feed.actions("LIST_STYLES")) == 1

    painting = {"name": "starry-night", "title": "The Starry Night", "artist": "Vincent van Gogh", "year": "1889"}
    feed.push("STYLES", {"styles": [painting, {"name": "waves"}]})

    expect(item.locator(".style-name")).to_have_text("The Starry Night")
    assert item.locator("img").nth(1).get_attribute("alt") == "The photo, repainted in The Starry Night style"
    expect(item).to_have_class(re.compile(r"\bcurrent\b"))  # still marked as the one shown large
    expect(page.locator("#featured-caption")).to_have_text("After: The Starry Night · just now")
    expect(page.locator("#featured-after")).to_have_attribute("alt", "The photo, repainted in The Starry Night style")
    assert feed.errors == []


def test_a_failed_job_a_lost_connection_and_a_refusal_each_say_so(stack: Running, pages) -> None:
    job_id = "f" * 32
    answer: dict[str, str] = {"TRANSFER_STYLE": "accept"}

    def service(ws: WebSocketRoute, message: dict[str, Any]) -> None:
        if message["action"] == "LIST_STYLES":
            styles = [{"name": "swirls", "previewUrl": f"{stack.url}/styles/swirls.jpg"}]
            ws.send(json.dumps({"event": "STYLES", "data": {"styles": styles}}))
        elif message["action"] == "TRANSFER_STYLE" and answer["TRANSFER_STYLE"] == "accept":
            ws.send(json.dumps({"event": "TRANSFER_STYLE_ACCEPTED", "data": {"jobId": job_id, "jobToken": "t" * 43}}))
        elif message["action"] == "TRANSFER_STYLE" and answer["TRANSFER_STYLE"] == "hang up":
            ws.close(code=1001, reason="Going away")
        elif message["action"] == "TRANSFER_STYLE":
            refusal = {"action": "TRANSFER_STYLE", "message": "the image is not a JPEG, PNG or WebP file"}
            ws.send(json.dumps({"event": "ERROR", "data": refusal}))

    request = pages(REQUEST, mock=service)
    page = ready(request)
    error, button = page.locator("#job-error"), page.locator("#submit")
    choose(page, photo_png(96, 64))

    # the job fails in the worker
    submit(page)
    expect(button).to_be_disabled()
    # the preview, then a thumbnail of the painting so far shown over it
    request.push(f"TRANSFER_STYLE_PREVIEW::{job_id}", {"preview": f"{stack.url}/styles/swirls.jpg"})
    expect(page.locator("#sketch-badge")).to_have_text("Preview")
    expect(page.locator("#sketch")).to_be_visible()
    thumbnail = "data:image/png;base64," + base64.b64encode(photo_png(48, 32)).decode()
    progress = {"progress": 0.4, "iteration": 24, "total": 60, "thumbnail": thumbnail}
    request.push(f"TRANSFER_STYLE_PROGRESS::{job_id}", progress)
    expect(page.locator("#message")).to_have_text("Painting… 40% (step 24 of 60)")
    assert page.locator("#progress").evaluate("bar => bar.value") == pytest.approx(0.4)
    expect(page.locator("#sketch-badge")).to_have_text("Painting… 40%")
    expect(page.locator("#sketch")).to_have_attribute("src", thumbnail)
    expect(page.locator("#sketch")).to_be_visible()
    request.push(f"TRANSFER_STYLE_FAILED::{job_id}", {"error": "the photo is damaged or truncated"})
    expect(error).to_have_text(
        "The painting failed: the photo is damaged or truncated. Try again, or try another photo or style."
    )
    expect(page.locator("#job")).to_have_attribute("data-state", "failed")
    expect(page.locator("#sketch")).to_be_hidden()  # a failed job shows no preview
    expect(button).to_be_enabled()
    # pushes repeated after the end (a notify process killed mid-delivery) change nothing
    request.push(f"TRANSFER_STYLE_FAILED::{job_id}", {"error": "a repeat"})
    request.push(f"TRANSFER_STYLE_PROGRESS::{job_id}", {"progress": 0.5, "iteration": 30, "total": 60})
    page.wait_for_timeout(500)
    expect(page.locator("#job")).to_have_attribute("data-state", "failed")
    expect(error).to_contain_text("the photo is damaged or truncated")

    # the connection drops while the photo is being sent
    answer["TRANSFER_STYLE"] = "hang up"
    page.click("#submit")
    expect(error).to_contain_text("The connection to the service was lost while sending your photo")
    expect(button).to_be_enabled()
    expect(page.locator("#status")).to_have_attribute("data-state", "connected")  # back by itself
    expect(page.locator("#offline")).to_be_hidden()

    # the service refuses the request
    answer["TRANSFER_STYLE"] = "refuse"
    page.click("#submit")
    expect(error).to_have_text("The service did not accept this: the image is not a JPEG, PNG or WebP file.")
    expect(button).to_be_enabled()
    assert len(request.connections) == 2


def test_the_sizes_and_the_times_are_the_services(stack: Running, pages) -> None:
    """Nothing about sizes or speed is the page's own: a GPU service offers 512, 1024 and 2048 px
    with its preset, 1024 is chosen, the estimate is its measured pace times the photo's work plus a
    worker's start, and the time left while it paints follows the job's own progress."""
    pace, start = 0.05, 30.0
    offers = [sizes.offer(size, "standard") for size in sizes.SIZES["cuda"]]
    job_id = "e" * 32

    def service(ws: WebSocketRoute, message: dict[str, Any]) -> None:
        answers = {
            "LIST_STYLES": ("STYLES", {"styles": [{"name": "swirls", "previewUrl": f"{stack.url}/styles/swirls.jpg"}]}),
            "GET_SERVICE": ("SERVICE", {
                "device": "cuda", "deviceMeasured": True, "sizes": [o.message() for o in offers], "defaultSize": 1024,
                "minSize": 64, "maxSize": 2048, "startSeconds": start, "workersUp": 0, "waiting": 0,
                "pace": {"secondsPerMegapixelIteration": pace, "measuredAt": int(time.time() * 1000) - 120_000},
            }),
            "TRANSFER_STYLE": ("TRANSFER_STYLE_ACCEPTED", {"jobId": job_id, "jobToken": "t" * 43}),
            "PREVIEW_STYLES": ("STYLE_PREVIEWS_DONE", {"requestId": message.get("requestId"), "count": 0,
                                                       "skipped": []}),
        }  # fmt: skip
        if message["action"] in answers:
            event, data = answers[message["action"]]
            ws.send(json.dumps({"event": event, "data": data}))

    request = pages("/index.html", mock=service)
    page = ready(request)
    expect(page.locator("#sizes .size-choice")).to_have_count(3)
    assert [c.inner_text().split("\n")[0] for c in page.locator("#sizes .size-choice").all()] == [
        "512 px", "1024 px · quick", "2048 px",
    ]  # fmt: skip
    expect(page.locator("input[name=size]:checked")).to_have_value("1024")
    expect(page.locator("#service-note")).to_have_text("The service paints on a GPU.")
    choose(page, photo_png(400, 300))

    def seconds(size: int) -> float:
        return sizes.estimate_seconds(sizes.offer(size, "standard"), 400, 300, pace)

    expect(page.locator("#estimate")).to_have_attribute("data-seconds", f"{seconds(1024) + start:.1f}")
    expect(page.locator("#estimate")).to_have_text(re.compile(
        r"^1024 px: about \d+ s of painting, at the pace its GPU measured 2 min ago, plus about 30 s to start a "
        r"painter \(none is running now\)\.$"
    ))  # fmt: skip
    times = {int(t.get_attribute("data-size")): t.inner_text() for t in page.locator(".size-time").all()}
    assert times == {size: f"about {round(seconds(size))} s" for size in (512, 1024, 2048)}
    page.click("text=2048 px")
    expect(page.locator("#estimate")).to_have_attribute("data-seconds", f"{seconds(2048) + start:.1f}")

    submit(page)
    assert request.actions("TRANSFER_STYLE")[0]["options"] == {
        "preset": "standard", "size": 2048, "strength": 0.5, "preserveColors": False,
    }  # fmt: skip
    # before any progress: the painting and a worker's start; then the work left at the job's pace
    expect(page.locator("#message")).to_have_text(re.compile(r"^Waiting for a painter… · about \d+ s left$"))
    offer = sizes.offer(2048, "standard")
    first = sizes.work(offer, 400, 300) / 3  # iteration 200 of 600 ends the smallest scale: a third of the steps
    scale = sizes.fit(400, 300, offer.scales[0])
    done = scale[0] * scale[1] * 200 / 1e6
    request.push(f"TRANSFER_STYLE_PROGRESS::{job_id}", {"progress": 1 / 3, "iteration": 200, "total": 600})
    expect(page.locator("#message")).to_have_text(re.compile(r"^Painting… 33% \(step 200 of 600\) · about \d+ s left$"))
    left = float(page.locator("#progress-area").get_attribute("data-left"))
    expected = (sizes.work(offer, 400, 300) - done) * pace
    assert expected - 2 <= left <= expected + 0.05  # counting down since, shown to a tenth
    assert first > done  # the big scales are most of the work: a third of the steps is far less of the time


def test_the_pages_come_with_a_security_policy_that_blocks_what_they_do_not_use(stack: Running, pages) -> None:
    """Every browser test here runs under the pages' Content-Security-Policy and fails on any
    violation; this one checks that the policy is really in force: an inline script is refused."""
    request = pages(REQUEST)
    page = ready(request)
    headers = requests.get(f"{stack.url}{REQUEST}", timeout=10).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.injected = 1";
                             document.body.append(s); }""")  # fmt: skip
    assert page.evaluate("window.injected") is None
    assert any("script-src" in text for text in request.refused)
    request.refused.clear()  # the one refusal this test caused on purpose


@pytest.mark.parametrize(("path", "message"), [(REQUEST, "#job-error"), (FEED, "#feed-error")], ids=["request", "feed"])
def test_a_page_that_cannot_find_the_service_says_so(stack: Running, context: BrowserContext, path, message) -> None:
    """config.json (the service's address) cannot be read: the header and the page both say so."""
    page = context.new_page()
    page.route("**/config.json", lambda route: route.fulfill(status=503, body="unavailable"))
    page.goto(stack.url + path)
    status = page.locator("#status")
    expect(status).to_have_text("Unavailable")
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status).to_have_attribute("title", "Unavailable")
    expect(page.locator(message)).to_have_text(
        "This page cannot reach the service: config.json is missing: the page does not know the service's address."
    )
    expect(page.locator(message)).to_be_visible()
    page.close()
