"""The pages' screenshots for the README (web/screenshots/): `make screenshots`, or
`.venv/bin/python -m tests.web.screenshots [--size N]`.

Starts the local stack, repaints three public photos that ship with scikit-image (public domain)
through the request page in Chromium, then photographs the request page with its last result and
the Feed with all three, at desktop width (1280 px) and at a phone's (390 px). The worker runs on
the CPU: with the preview preset's 256 px, a few minutes."""

from __future__ import annotations

import argparse
import io
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
JOBS = [  # photo, style (the catalogue's paintings), strength, keep colours
    ("coffee.jpg", data.coffee, "the-great-wave", 0.6, False),
    ("astronaut.jpg", data.astronaut, "the-scream", 0.6, False),
    ("chelsea.jpg", data.chelsea, "starry-night", 0.5, False),
]


def jpeg(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def repaint(page: Page, name: str, photo: bytes, style: str, strength: float, colors: bool) -> None:
    page.set_input_files("#photo", files=[{"name": name, "mimeType": "image/jpeg", "buffer": photo}])
    expect(page.locator("#drop")).to_have_attribute("data-state", "chosen")
    page.click(f'.style[data-name="{style}"]')
    page.locator("#strength").fill(str(strength))
    page.locator("#colors").set_checked(colors)
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
    parser.add_argument("--size", type=int, help="options.size of the jobs (default: the preview preset's 256)")
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
            expect(page.locator(".style[data-name]").first).to_be_visible()
            for name, photo, style, strength, colors in JOBS:
                started = time.monotonic()
                repaint(page, name, jpeg(photo()), style, strength, colors)
                print(f"{name} in {style}: {time.monotonic() - started:.0f} s", flush=True)
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
            browser.close()
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
