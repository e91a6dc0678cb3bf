"""The pages' screenshots for the README (web/screenshots/): `make screenshots`, or
`.venv/bin/python -m tests.web.screenshots [--size N]`.

Starts the local stack, repaints three public photos that ship with scikit-image (public domain)
through the request page in Chromium (the last one in a blend of two paintings), then photographs
the request page with its last result (its tiles showing that photo in every style, and "Your
paintings"), the Feed with all three and the last one's own page, at desktop width (1280 px) and
at a phone's (390 px). The worker runs on the CPU: at the CPU's quick size, 256 px, a few
minutes."""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright
from skimage import data

from ..local.stack_process import ROOT, Running
from .browser import launch

OUT = ROOT / "web" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
JOBS = [  # photo, style (the catalogue's paintings), a second one blended in and its mix, strength, keep colours
    ("coffee.jpg", data.coffee, "the-great-wave", None, 0.6, False),
    ("astronaut.jpg", data.astronaut, "the-scream", None, 0.6, False),
    ("chelsea.jpg", data.chelsea, "starry-night", ("the-great-wave", 0.7), 0.5, False),
]


def jpeg(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def repaint(page: Page, name: str, photo: bytes, style: str, blend: tuple[str, float] | None, strength: float,
            colors: bool) -> None:  # fmt: skip
    page.set_input_files("#photo", files=[{"name": name, "mimeType": "image/jpeg", "buffer": photo}])
    expect(page.locator("#drop")).to_have_attribute("data-state", "chosen")
    expect(page.locator(".style[data-preview]")).to_have_count(
        page.locator(".style[data-name]").count(), timeout=60_000
    )
    page.click(f'.style[data-name="{style}"]')
    page.locator("#strength").fill(str(strength))
    page.locator("#colors").set_checked(colors)
    if blend:
        page.click("#blend-add")
        page.select_option("#second", blend[0])
        page.locator("#mix").fill(str(blend[1]))
        expect(page.locator("#blend-preview")).to_be_visible(timeout=60_000)
    page.click("#submit")
    expect(page.locator("#job")).to_have_attribute("data-state", "done", timeout=600_000)
    expect(page.locator("#after")).to_be_visible()


def shoot(page: Page, name: str, hover: str | None = None) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    if hover:
        page.hover(hover)  # the pointer on the featured pair holds its rotation
    else:
        page.mouse.move(0, 0)
    time.sleep(0.8)  # fade-ins end
    path = OUT / name
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True, animations="disabled"))).convert("RGB")
    # 256 colours, dithered: a third of the bytes, and the photos still look like photos
    shot.quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.web.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, help="options.size of the jobs (default: the service's quick size)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    query = f"?size={args.size}" if args.size else ""
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        stack = Running(Path(tmp))
        try:
            browser = launch(playwright)
            desktop = browser.new_context(viewport=DESKTOP)
            page = desktop.new_page()
            page.goto(f"{stack.url}/index.html{query}")
            expect(page.locator(".style[data-name]").first).to_be_visible(timeout=60_000)  # the stack just started
            for name, photo, style, blend, strength, colors in JOBS:
                started = time.monotonic()
                repaint(page, name, jpeg(photo()), style, blend, strength, colors)
                print(f"{name} in {style}{f' and {blend[0]}' if blend else ''}: {time.monotonic() - started:.0f} s",
                      flush=True)  # fmt: skip
            expect(page.locator("#estimate")).to_have_attribute("data-seconds", re.compile(r"\d"))
            shoot(page, "request.png")
            page.set_viewport_size(PHONE)
            shoot(page, "request-phone.png")

            feed = desktop.new_page()
            feed.goto(f"{stack.url}/feed.html")
            expect(feed.locator("#gallery li")).to_have_count(len(JOBS))
            feed.hover("#featured-after")  # the newest stays featured
            feed.locator("#featured-after").evaluate("img => img.decode()")
            shoot(feed, "feed.png", hover="#featured-after")
            feed.set_viewport_size(PHONE)
            shoot(feed, "feed-phone.png", hover="#featured-after")

            own = desktop.new_page()
            own.goto(feed.locator("#gallery li .tile-open").first.get_attribute("href"))
            expect(own.locator("body")).to_have_attribute("data-state", "shown")
            expect(own.locator("#by")).to_contain_text("After")
            own.locator("#after").evaluate("img => img.decode()")
            shoot(own, "painting.png")
            browser.close()
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
