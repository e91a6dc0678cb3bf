"""PREVIEW_STYLES on the local stack: how soon a user sees their photo in the first style, and in
every style of the catalogue, after choosing it.

    python benchmarks/bench_style_previews.py [--repeat 5]

Starts the local stack as users do (`python -m stylelocal --device cpu`, a subprocess) and
connects one WebSocket client, which sends scikit-image's cat photo as the request page does: a
JPEG of at most 256 px, inline. A first request, as soon as the stack runs, may wait for the
function's warm-up and is shown apart; then, for each of `--repeat` requests, the seconds from
sending PREVIEW_STYLES to the first STYLE_PREVIEW, to the last, and to STYLE_PREVIEWS_DONE, then
their medians and maxima, with the machine (CPU model, cores, AVX-512 or not, load) and the date.

The goals (docs/protocol.md): the first preview within 1 s and all ten within 3 s at 256 px on
this project's 2-core CPU. Not a test: a timing depends on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import os
import platform
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

SIDE = 256  # what the page sends (client.js smallJpeg) and the previews' size
WARM_SECONDS = 120


def photo() -> str:
    from skimage import data

    image = Image.fromarray(data.chelsea())
    image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode()


def machine() -> dict[str, Any]:
    """The CPU and what else weighs on it, for the figures' context."""
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:  # not Linux
        pass
    model = model or platform.processor() or "unknown"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags.split(),
        "load": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.date.today().isoformat(),
    }


def once(ws: Any, image: str, number: int) -> dict[str, Any]:
    request_id = f"bench-{number}"
    sent = time.perf_counter()
    ws.send(json.dumps({"action": "PREVIEW_STYLES", "image": image, "requestId": request_id}))
    arrivals: list[float] = []
    while True:
        message = json.loads(ws.recv(timeout=60))
        if message["event"] == "ERROR":
            raise RuntimeError(message["data"])
        if message["data"].get("requestId") != request_id:
            continue
        if message["event"] == "STYLE_PREVIEW":
            arrivals.append(time.perf_counter() - sent)
        elif message["event"] == "STYLE_PREVIEWS_DONE":
            done = time.perf_counter() - sent
            return {"styles": len(arrivals), "first": arrivals[0], "last": arrivals[-1], "done": done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="requests to time (default: %(default)s)")
    args = parser.parse_args(argv)
    about = machine()
    print(json.dumps({"benchmark": "PREVIEW_STYLES", "side": SIDE, **about}), flush=True)
    image = photo()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Running(Path(tmp))
        try:
            rows = []
            with connect(stack.ws_url, max_size=None, ping_interval=None) as ws:
                # the first request as soon as the stack says it runs: it may wait for the
                # function's warm-up (`make up` starts it at once); shown, not counted
                first = once(ws, image, 0)
                print(json.dumps({"request": "first after start (not counted)",
                                  **{k: round(v, 3) if isinstance(v, float) else v for k, v in first.items()}}),
                      flush=True)  # fmt: skip
                for number in range(1, args.repeat + 1):
                    row = once(ws, image, number)
                    rows.append(row)
                    print(json.dumps({"request": number, **{k: round(v, 3) if isinstance(v, float) else v
                                                            for k, v in row.items()}}), flush=True)  # fmt: skip
        finally:
            stack.stop()
    summary = {
        name: {
            "median": round(statistics.median(r[name] for r in rows), 3),
            "max": round(max(r[name] for r in rows), 3),
        }
        for name in ("first", "last", "done")
    }
    print(json.dumps({"summary": summary, "styles": rows[0]["styles"], **about}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
