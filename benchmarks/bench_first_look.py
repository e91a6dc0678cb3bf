"""What a user waits for on the local stack: the instant preview, and a whole job with and without
options.

    python benchmarks/bench_first_look.py [--previews 5] [--whole]

Starts the local stack as users do (`python -m stylelocal --device cpu`, a subprocess) and
connects one WebSocket client, which sends scikit-image's cat photo (451x300, a JPEG of at most
22 KB, inline as the page sends small photos) with the
catalogue's The Starry Night:

1. `--previews` jobs at 64 px, one after the other: seconds from TRANSFER_STYLE_ACCEPTED to
   TRANSFER_STYLE_PREVIEW (the state machine's RecordJob, the preview function's run, its push);
2. with `--whole`, one job with the request page's options (`preset: "preview"`, the preset's
   256 px) and one with no options at all (as the original protocol's clients send it: `auto`,
   so `preview` on this CPU): seconds from sending TRANSFER_STYLE to its result.

Each row is printed as soon as it is measured.

Figures go to docs/performance.md. Not a test: a timing depends on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.local.stack_process import Running  # noqa: E402 - the stack as users start it

STYLE = "starry-night"
JOB_SECONDS = 600


def photo() -> str:
    from skimage import data

    # inline, as the page sends photos up to about 22 KB (API Gateway's 32 KB frame limit)
    for quality in (85, 75, 65, 55):
        encoded = io.BytesIO()
        Image.fromarray(data.chelsea()).save(encoded, format="JPEG", quality=quality)
        if encoded.tell() <= 22 * 1024:
            break
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def until(self, event: str, timeout: float = JOB_SECONDS) -> tuple[dict[str, Any], float]:
        """The next message named `event` (or ERROR), and when it arrived (perf_counter)."""
        deadline = time.perf_counter() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.perf_counter())))
            if message["event"] in (event, "ERROR"):
                if message["event"] == "ERROR":
                    raise RuntimeError(message["data"])
                return message["data"], time.perf_counter()

    def job(self, image: str, options: dict[str, Any] | None) -> dict[str, float]:
        request: dict[str, Any] = {"action": "TRANSFER_STYLE", "image": image, "style": STYLE, "isPrivate": True}
        if options is not None:
            request["options"] = options
        sent = time.perf_counter()
        self.ws.send(json.dumps(request))
        accepted, accepted_at = self.until("TRANSFER_STYLE_ACCEPTED")
        job_id = accepted["jobId"]
        _, preview_at = self.until(f"TRANSFER_STYLE_PREVIEW::{job_id}")
        _, done_at = self.until(f"TRANSFER_STYLE_COMPLETED::{job_id}")
        return {"accepted": accepted_at - sent, "preview": preview_at - accepted_at, "result": done_at - sent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--previews", type=int, default=5, help="64 px jobs timed (default: %(default)s)")
    parser.add_argument(
        "--whole", action="store_true", help="also time whole jobs at the page's size and with no options"
    )
    args = parser.parse_args(argv)
    image = photo()
    print("| job | TRANSFER_STYLE -> result s | ACCEPTED -> PREVIEW s |")
    print("| --- | --: | --: |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Running(Path(tmp))
        try:
            with connect(stack.ws_url, max_size=None) as ws:
                client = Client(ws)
                for number in range(1, args.previews + 1):
                    timed = client.job(image, {"preset": "preview", "size": 64})
                    print(f"| {number}: 64 px | {timed['result']:.1f} | {timed['preview']:.2f} |", flush=True)
                if args.whole:
                    for name, options in (("the page's options (preview, 256 px)", {"preset": "preview"}),
                                          ("no options (auto: preview on a CPU)", None)):  # fmt: skip
                        timed = client.job(image, options)
                        print(f"| {name} | {timed['result']:.1f} | {timed['preview']:.2f} |", flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
