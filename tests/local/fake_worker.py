"""A stand-in for `python -m stylize_worker` in the local Batch tests: starts in a fraction of a
second and does what its arguments say.

    --record DIR        write DIR/attempt-<AWS_BATCH_JOB_ATTEMPT>.json: the environment it got, its pid
    --print TEXT        print a line
    --sleep SECONDS     then sleep
    --exit CODE         exit with CODE (default 0)
    --exit-first CODE   exit with CODE on the first attempt only (0 on later ones)
    --ignore-term       ignore SIGTERM (only SIGKILL ends it)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--record", type=Path)
parser.add_argument("--print", dest="text")
parser.add_argument("--sleep", type=float, default=0)
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--exit-first", type=int)
parser.add_argument("--ignore-term", action="store_true")
arguments = parser.parse_args()

if arguments.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT", "0"))
if arguments.record:
    record = {"attempt": attempt, "pid": os.getpid(), "argv": sys.argv, "environ": dict(os.environ)}
    (arguments.record / f"attempt-{attempt}.json").write_text(json.dumps(record))
if arguments.text:
    print(arguments.text, flush=True)
if arguments.sleep:
    time.sleep(arguments.sleep)
if arguments.exit_first is not None:
    sys.exit(arguments.exit_first if attempt == 1 else 0)
sys.exit(arguments.exit)
