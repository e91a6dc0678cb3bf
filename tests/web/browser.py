"""Debian's Chromium, driven by Playwright, for the pages' tests and their screenshots.

Playwright's own browser downloads are never used (`playwright install` is not run): the browser
is the system's /usr/bin/chromium, which `make test` installs when it is missing (`make chromium`).
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm, too small for a renderer
]
MISSING = (
    f"{CHROMIUM} is missing: the pages' browser tests need Debian's Chromium. `make chromium` installs it "
    "(as root: apt-get install chromium); `make test` does so by itself."
)


def launch(playwright: Playwright) -> Browser:
    """Headless Chromium; FileNotFoundError, saying how to install it, when it is not there."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(MISSING)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
