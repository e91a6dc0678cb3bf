"""`python -m stylelocal`: the whole system on this machine, with no AWS account and no Docker.

moto stands in for S3, DynamoDB, SQS and Step Functions (which executes the real state machine);
our own pieces stand in for what moto cannot do: the WebSocket API and its @connections endpoint
(which also serves the pages and, like CloudFront, the public images), Lambda (each function in
its own process, with its template environment), the SQS trigger of the notify function,
EventBridge (the scaler's schedule and the Batch events it follows) and AWS Batch (which runs the
pool's real workers, on the GPU when there is one).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .aws import LocalAws, start_moto
from .batch import LocalBatch, visible_gpus
from .catalogue import seed_styles
from .event_source import SqsEventSource
from .events import ExecutionWatcher, LocalEvents
from .gateway import IDLE_TIMEOUT_SECONDS, Gateway
from .lambdas import LambdaRuntime, RuntimeClosedError
from .moto_fixes import set_lambda_invoker
from .persistence import PeriodicSaver, restore, save

WEB = Path(__file__).resolve().parents[2] / "web"
INTERRUPTED = "the local stack was stopped while this job ran; please submit it again"
log = logging.getLogger("stylelocal")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stylelocal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port of the pages and WebSocket (default: %(default)s)")
    parser.add_argument("--data", type=Path, help="keep images, jobs and the gallery in this directory across restarts")
    parser.add_argument("--device", default="auto", help="where jobs run: auto, cpu, cuda, cuda:N (default: auto)")
    parser.add_argument(
        "--workers", type=int, metavar="N",
        help="GPU workers that may run at once (default: one per GPU, or one on a CPU; MaxWorkers follows it "
        "unless given); 0 starts none, as an account without GPU quota",
    )  # fmt: skip
    parser.add_argument(
        "--access-key", default="", help="as the stack's AccessKey: clients must connect with ?key=KEY (default: none)"
    )
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="NAME=VALUE", type=parameter,
        help="a template.yaml parameter other than its default, e.g. JobsPerSourceIp=0 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--idle-timeout", type=float, default=IDLE_TIMEOUT_SECONDS, metavar="SECONDS",
        help="close a WebSocket connection idle this long, as API Gateway does after 10 minutes (default: %(default)g)",
    )  # fmt: skip
    parser.add_argument("--web", type=Path, default=WEB, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def parameter(text: str) -> tuple[str, str]:
    """NAME=VALUE of a template.yaml parameter, for argparse."""
    from .template import load

    name, equals, value = text.partition("=")
    if not equals or name not in load()["Parameters"]:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE, NAME a parameter of template.yaml")
    return name, value


def fail_interrupted_jobs(aws: LocalAws) -> int:
    """Jobs restored as SUBMITTED or RUNNING have no execution any more (executions and queue
    messages are not kept): end them as FAILED, with a reason, so GET_JOB tells their owners."""
    table = aws.refs["JobsTable"]
    dynamodb = aws.client("dynamodb")
    ended = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if item.get("status", {}).get("S") in ("SUBMITTED", "RUNNING"):
                dynamodb.update_item(
                    TableName=table,
                    Key={"jobId": item["jobId"]},
                    UpdateExpression="SET #s = :failed, #e = :why",
                    ExpressionAttributeNames={"#s": "status", "#e": "error"},
                    ExpressionAttributeValues={":failed": {"S": "FAILED"}, ":why": {"S": INTERRUPTED}},
                )
                ended += 1
    return ended


# the functions with a network to load (and PREVIEW_STYLES the catalogue's style vectors to make),
# started with the stack so that the first preview comes as fast as the others
WARMED_FUNCTIONS = ("PreviewFunction", "PreviewStylesFunction")
# Not kept across restarts: no worker survives one (the pool's table), nor any execution, so the
# jobs in flight and their places (the rate limits table, with its short-lived counters) start over.
TRANSIENT_TABLES = ("WorkersTable", "RateLimitsTable")


def warm_quietly(runtime: LambdaRuntime, logical_id: str) -> None:
    try:
        runtime.warm([logical_id])
    except RuntimeClosedError:  # the stack stopped before it was warm: nothing is wrong
        pass
    except Exception:  # the first invocation starts it then, and reports what is wrong
        log.warning("could not start %s ahead of the first job", logical_id, exc_info=True)


def apply_parameters(aws: LocalAws, args: argparse.Namespace, worker_slots: int) -> None:
    """The stack parameters given on the command line, as `sam deploy --parameter-overrides`
    gives them: what !Ref of a parameter resolves to in the functions' environments. MaxWorkers is
    what this machine can run at once, unless given: a worker that can never get a slot would
    only wait and time out."""
    aws.refs.update({"AccessKey": args.access_key, "MaxWorkers": str(max(1, worker_slots)), **dict(args.parameter)})


class Stack:
    """Everything started in order; stop() undoes it in reverse, whatever was reached."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._stops: list[Callable[[], Any]] = []
        self.gateway: Gateway | None = None

    def start(self) -> Stack:
        args = self.args
        moto = start_moto()
        self._stops.append(moto.stop)
        gpus = visible_gpus(args.device)
        slots = args.workers if args.workers is not None else max(1, len(gpus))
        self.aws = aws = LocalAws(moto.endpoint)
        apply_parameters(aws, args, slots)  # before anything reads them (the state machine, the functions)
        aws.create()
        if args.data:
            if restore(aws, args.data):
                ended = fail_interrupted_jobs(aws)
                log.info("restored %s%s", args.data, f"; {ended} unfinished job(s) marked failed" if ended else "")
            # runs late: after the last job stopped; the pool's table is not kept (no worker survives)
            self._stops.append(lambda: save(aws, args.data, exclude=TRANSIENT_TABLES))
        seed_styles(aws)
        runtime = LambdaRuntime(aws)
        self._stops.append(runtime.close)
        self.gateway = Gateway(
            runtime, host=args.host, port=args.port, web_dir=args.web, idle_timeout=args.idle_timeout
        ).start_background()
        self._stops.append(self.gateway.stop_background)
        # the functions reach @connections and build public URLs through the gateway
        # and GET_SERVICE says what this machine's workers paint on until one has measured it (the
        # template says "cuda": in AWS they run on GPU instances)
        runtime.update_overrides(
            {
                "WEBSOCKET_ENDPOINT": self.gateway.management_endpoint,
                "PUBLIC_BASE_URL": self.gateway.http_url,
                "WORKER_DEVICE": "cuda" if gpus else "cpu",
            }
        )
        # the state machine's preview step runs in the local runtime; its network loads now, in the
        # background, so that the first job's preview comes as fast as the others
        set_lambda_invoker(runtime.invoke_for_state_machine)
        self._stops.append(lambda: set_lambda_invoker(None))
        for warmed in WARMED_FUNCTIONS:
            threading.Thread(target=warm_quietly, args=(runtime, warmed), daemon=True).start()
        # EventBridge: the Batch runner's job events reach the scaler; its schedule starts after the
        # runner, since its first run may already start MinWarmWorkers
        events = LocalEvents(runtime, aws)
        batch = LocalBatch(aws, device=args.device, slots=slots, on_state_change=events.publish).start()
        self._stops.append(batch.stop)
        events.start()
        self._stops.append(events.stop)
        watcher = ExecutionWatcher(aws, events).start()  # jobs' ends: their places in flight given back
        self._stops.append(watcher.stop)
        results = SqsEventSource(runtime, aws).start()
        self._stops.append(results.stop)
        if args.data:
            saver = PeriodicSaver(aws, args.data, exclude=TRANSIENT_TABLES).start()
            self._stops.append(saver.stop)
        return self

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception:  # keep stopping the rest; say what failed
                log.exception("while stopping")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stack = Stack(args)
    try:
        stack.start()
        assert stack.gateway is not None
        url = stack.gateway.http_url
        print(f"\nStyle transfer is running at {url}/  (live Feed: {url}/feed.html)", flush=True)
        # where to look inside: aws --endpoint-url ... (any credentials) reads its tables, bucket and queues
        print(f"Local AWS (moto): {stack.aws.endpoint}", flush=True)
        print("Press Ctrl-C to stop.\n", flush=True)
        # Not stopping.wait(): the signal handler runs on this thread, and Event.set() there can
        # deadlock against this thread's own wait() holding the event's lock. Polling holds nothing.
        while not stopping.is_set():
            time.sleep(0.2)
        print("stopping…", flush=True)
    except OSError as error:
        print(f"stylelocal: error: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
