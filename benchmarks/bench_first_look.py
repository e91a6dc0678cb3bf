"""What a user waits for on the local stack: the instant preview, and a whole job with and without
options.

    python benchmarks/bench_first_look.py [--previews 5]

Starts the local stack as users do (`python -m stylelocal --device cpu`, a subprocess) and
connects one WebSocket client, which sends scikit-image's cat photo (451x300, a JPEG) with the
catalogue's The Starry Night:

1. one job with the request page's options (`preset: "preview"`, the preset's 256 px) and one
   with no options at all (as the original protocol's clients send it: `auto`, so `preview` on
   this CPU): seconds from sending TRANSFER_STYLE to its result;
2. `--previews` jobs at 64 px, one after the other: seconds from TRANSFER_STYLE_ACCEPTED to
   TRANSFER_STYLE_PREVIEW (the state machine's RecordJob, the preview function's run, its push).

Figures go to docs/benchmarks.md ("The instant preview"). Not a test: a timing depends on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
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

    encoded = io.BytesIO()
    Image.fromarray(data.chelsea()).save(encoded, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


class Client:
    def __init__(self, url: str) -> None:
        self.ws = connect(url, max_size=None)

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
    args = parser.parse_args(argv)
    image = photo()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Running(Path(tmp))
        try:
            client = Client(stack.ws_url)
            page = client.job(image, {"preset": "preview"})
            bare = client.job(image, None)
            small = [client.job(image, {"preset": "preview", "size": 64}) for _ in range(args.previews)]
        finally:
            stack.stop()
    print("| job | TRANSFER_STYLE -> result s | ACCEPTED -> PREVIEW s |")
    print("| --- | --: | --: |")
    print(f"| the page's options (preset preview, 256 px) | {page['result']:.1f} | {page['preview']:.2f} |")
    print(f"| no options (auto: preview on this CPU) | {bare['result']:.1f} | {bare['preview']:.2f} |")
    previews = sorted(job["preview"] for job in small)
    print(
        f"| {len(small)} jobs at 64 px | median {statistics.median(job['result'] for job in small):.1f} "
        f"| median {statistics.median(previews):.2f}, max {previews[-1]:.2f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
