"""A warm worker: loads PyTorch, the network and the kernels once, then paints job after job from
the work queue until it has been idle WORKER_IDLE_SECONDS, or is told to stop.

Environment (the Batch job definition's, and the scaler's WORKER_ID):

    WORKER_ID              this worker's item in the workers table (workerpool)
    WORK_QUEUE_URL         where the state machine puts jobs (stylejob.job.WorkItem)
    WORKERS_TABLE          the pool's table
    JOBS_TABLE             the jobs: each attempt is counted on the job's item
    IMAGES_BUCKET          the images; RESULTS_QUEUE_URL: progress and results for the notifier
    WORKER_IDLE_SECONDS    idle this long, the worker leaves (unless MIN_WARM_WORKERS keeps it)
    MIN_WARM_WORKERS       how many stay however long they are idle
    MAX_ATTEMPTS           how many workers a job may stop before it is failed
    WORKER_LEASE_SECONDS   how long a worker or a job it holds stays counted without a renewal

Each job: the message is received (invisible to others for a lease), the job's attempt counted,
the painting made and stored, then SendTaskSuccess or SendTaskFailure with a reason for the user,
and the message deleted. Heartbeats (the state machine's task, the message's visibility, the
worker's lease) go out every third of a lease from a thread of their own.

SIGTERM (Batch stopping the job, Spot's notice, Ctrl-C of the local stack): no new job is taken;
the one held is finished if it ends within a few seconds, else handed back to the queue; then the
worker leaves the pool and exits 0.

It logs one JSON line when it is ready (where its start-up time went), one per job (where the
job's time went, the process's resident memory and the GPU's peak) and one when it leaves.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .task import CLAIMED, EXHAUSTED, HELD, Clients, HandBack, Task, TaskLost

POLL_SECONDS = 5  # a long poll this long at most: SIGTERM is noticed within it
# On a GPU the start-up runs a few iterations at the common sizes' scales, so that a job there
# meets loaded kernels, cuDNN's plans and a warm allocator rather than their first-use costs.
WARM_SIZES = (512, 1024)
WARM_ITERATIONS = 3


@dataclass(frozen=True)
class Config:
    worker_id: str
    work_queue_url: str
    workers_table: str
    jobs_table: str
    idle_seconds: float
    min_warm: int
    max_attempts: int
    lease_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Config:
        def required(name: str) -> str:
            value = environ.get(name)
            if not value:
                raise SystemExit(f"stylize-worker: error: the worker is misconfigured ({name} is not set)")
            return value

        return cls(
            worker_id=required("WORKER_ID"),
            work_queue_url=required("WORK_QUEUE_URL"),
            workers_table=required("WORKERS_TABLE"),
            jobs_table=required("JOBS_TABLE"),
            idle_seconds=float(environ.get("WORKER_IDLE_SECONDS", "300")),
            min_warm=int(environ.get("MIN_WARM_WORKERS", "0")),
            max_attempts=int(environ.get("MAX_ATTEMPTS", "2")),
            lease_seconds=float(environ.get("WORKER_LEASE_SECONDS", "30")),
        )


def log(message: str, **fields: Any) -> None:
    print(json.dumps({"message": message, **fields}, default=str), flush=True)


def seconds_since_process_start() -> float:
    """Wall time since this process began (interpreter start-up included), from /proc on Linux."""
    try:
        with open("/proc/self/stat") as stat:
            # field 22 (starttime) in clock ticks after boot; the name in field 2 may hold spaces
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            return round(float(uptime.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return round(time.perf_counter() - _IMPORTED_AT, 3)


_IMPORTED_AT = time.perf_counter()


def resident_mib() -> float | None:
    """This process's resident memory now (not its peak: a leak shows as growth job after job)."""
    try:
        with open("/proc/self/statm") as statm:
            return round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def gpu_peak_mib(device: Any) -> float | None:
    """The GPU memory this job held at its peak, then the count starts again for the next job."""
    if getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    peak = torch.cuda.max_memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    return round(peak / 2**20, 1)


class Keepalive:
    """The worker's lease in the pool, and the held task's heartbeats, every third of a lease, in
    a thread of its own (the painting holds the main thread). `reaped` is set when the pool no
    longer counts this worker (its lease lapsed once, say under a long pause): it finishes what it
    holds and leaves."""

    def __init__(self, registry: Any, config: Config) -> None:
        self.registry = registry
        self.config = config
        self.task: Task | None = None
        self.jobs_done = 0
        self.reaped = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="keepalive", daemon=True)

    def start(self) -> Keepalive:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def hold(self, task: Task | None, jobs_done: int | None = None) -> None:
        """The task now held (None: idle), recorded in the pool at once."""
        with self._lock:
            self.task = task
            if jobs_done is not None:
                self.jobs_done = jobs_done
            self._renew()

    def _run(self) -> None:
        while not self._stop.wait(self.config.lease_seconds / 3):
            try:
                with self._lock:
                    if self.task is not None:
                        self.task.heartbeat()
                    self._renew()
            except Exception:  # the next beat may get through: a lease is three beats long
                log("heartbeat failed", workerId=self.config.worker_id, traceback=traceback.format_exc())

    def _renew(self) -> None:
        from workerpool import BUSY, IDLE

        task = self.task
        job = (task.job.job_id, task.receipt) if task is not None else None
        alive = self.registry.renew(
            self.config.worker_id, BUSY if task else IDLE, self.config.lease_seconds, job=job, jobs_done=self.jobs_done
        )
        if not alive:
            self.reaped.set()


class Worker:
    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.config = config
        self.environ = environ
        self.stopping = threading.Event()
        self.jobs_done = 0

    # --- start-up -----------------------------------------------------------------------------

    def start(self) -> dict[str, float]:
        """PyTorch, the AWS clients, the network on its device and warm kernels; the seconds each took."""
        from .painting import Phases

        phases = Phases()
        with phases.phase("imports"):
            import boto3
            import styletransfer  # noqa: F401 - imports torch: seconds on a cold container
            from styletransfer import preset
            from styletransfer.engine import load_model
            from workerpool import Registry
        with phases.phase("clients"):
            dynamodb = boto3.client("dynamodb")
            self.clients = Clients(
                sqs=boto3.client("sqs"),
                states=boto3.client("stepfunctions"),
                dynamodb=dynamodb,
                work_queue_url=self.config.work_queue_url,
                jobs_table=self.config.jobs_table,
            )
            self.registry = Registry(self.config.workers_table, dynamodb)
            s3 = boto3.client("s3")
        with phases.phase("model"):
            self.device = load_model(preset("auto"))
        with phases.phase("warm_up"):
            warm_up(self.device)
        from .painting import Painter

        self.painter = Painter(s3, self.clients.sqs, self.environ, self.device)
        return phases.seconds

    # --- the loop -----------------------------------------------------------------------------

    def serve(self) -> str:
        """Take jobs until idle long enough, stopped or reaped; why it left."""
        keepalive = self.keepalive = Keepalive(self.registry, self.config)
        if not self.registry.renew(self.config.worker_id, "IDLE", self.config.lease_seconds):
            return "not in the pool (it gave up on this worker before it came up)"
        self.registry.came_up()
        self.registry.record_pace(self.device.type, start_seconds=seconds_since_process_start())
        keepalive.start()
        idle_since = time.monotonic()
        why = None
        try:
            while why is None:
                if self.stopping.is_set():
                    why = "stopped"
                elif keepalive.reaped.is_set():
                    why = "the pool no longer counted it"
                elif time.monotonic() - idle_since >= self.config.idle_seconds:
                    if self.registry.retire(self.config.worker_id, keep=self.config.min_warm):
                        return f"idle for {self.config.idle_seconds:g} s"
                    idle_since = time.monotonic()  # MinWarmWorkers keeps it
                else:
                    left = self.config.idle_seconds - (time.monotonic() - idle_since)
                    if self._take_one(wait=max(1, min(POLL_SECONDS, round(left)))):
                        idle_since = time.monotonic()
        finally:
            keepalive.stop()
        self.registry.release(self.config.worker_id)
        return why

    def _take_one(self, wait: int) -> bool:
        """Receive at most one job and see it through; whether one came."""
        from pydantic import ValidationError
        from stylejob.job import WorkItem

        received = self.clients.sqs.receive_message(
            QueueUrl=self.config.work_queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait,
            VisibilityTimeout=round(self.config.lease_seconds),
        ).get("Messages", [])
        if not received:
            return False
        message = received[0]
        try:
            item = WorkItem.model_validate_json(message["Body"])
        except ValidationError as invalid:  # not the state machine's: no token to answer
            log("work item dropped", reason=str(invalid)[:500])
            self.clients.sqs.delete_message(QueueUrl=self.config.work_queue_url, ReceiptHandle=message["ReceiptHandle"])
            return True
        task = Task(item, message["ReceiptHandle"], self.clients, self.config.worker_id, self.config.lease_seconds)
        task.stopping = self.stopping.is_set
        if self.stopping.is_set():
            task.hand_back()
            return True
        self._see_through(task)
        return True

    def _see_through(self, task: Task) -> None:
        from stylejob.job import TaskResult

        from .painting import JobError, Phases, unexpected_reason
        from .progress import ProgressReporter

        received = time.perf_counter()
        job_id = task.job.job_id
        self.registry.taken()  # off the queue, whatever becomes of it: no longer waiting
        if not task.heartbeat():  # a stale copy: its execution ended or was stopped
            log("work item for a task that is over", jobId=job_id)
            task.done()
            return
        claim = task.claim(self.config.max_attempts)
        if claim == HELD:
            log("job held by another worker", jobId=job_id)
            task.later()
            self.registry.arrived()  # still waiting, for its holder's claim to lapse
            return
        if claim != CLAIMED:
            if claim == EXHAUSTED:
                task.exhausted(self.config.max_attempts)
            log("job not run", jobId=job_id, why=claim)
            task.done()
            return
        self.keepalive.hold(task)
        phases = Phases()
        reporter = ProgressReporter(job_id, self.painter.send, log, checkpoint=task.checkpoint)
        outcome, summary = "succeeded", {}
        try:
            summary = self.painter.paint(task.job, reporter, phases)
            if (pace := painting_pace(summary)) is not None:  # for the page's estimates of a job's time
                self.registry.record_pace(self.device.type, seconds_per_megapixel_iteration=pace)
            task.succeed(
                TaskResult(
                    result_key=task.job.output_key,
                    completed_at=int(time.time() * 1000),
                    worker_id=self.config.worker_id,
                    attempt=task.attempt,
                ).output()
            )
        except TaskLost:
            outcome = "lost"  # cancelled or timed out: nobody waits for an answer
        except HandBack:
            outcome = "handed back"
            task.hand_back()
            self.registry.arrived()  # it waits again, for another worker
        except JobError as failure:
            outcome = "failed"
            task.fail(failure.error, str(failure))
        except Exception as failure:  # e.g. out of GPU memory: this job fails, the worker goes on
            outcome = "failed"
            log("unexpected failure", jobId=job_id, traceback=traceback.format_exc())  # for operators only
            from stylejob.job import FAILED

            task.fail(FAILED, unexpected_reason(failure))
        finally:
            if outcome != "handed back":
                task.done()
            self.jobs_done += 1
            self.keepalive.hold(None, jobs_done=self.jobs_done)
            gc.collect()  # what a failed job left (its exception's frames hold tensors) goes now
            if getattr(self.device, "type", "cpu") == "cuda":
                import torch

                torch.cuda.empty_cache()
        log(
            "stylize-worker job",
            jobId=job_id,
            workerId=self.config.worker_id,
            outcome=outcome,
            attempt=task.attempt,
            seconds=round(time.perf_counter() - received, 3),  # received to answered
            phases=phases.seconds,
            device=str(self.device),
            jobsDone=self.jobs_done,
            residentMiB=resident_mib(),
            gpuPeakMiB=gpu_peak_mib(self.device),
            **summary,
        )


def painting_pace(summary: dict[str, Any]) -> float | None:
    """Seconds per megapixel-iteration of a painting: its scales' seconds over their pixels times
    their iterations (what an estimate of another size's time multiplies back)."""
    work = sum(scale["size"][0] * scale["size"][1] * scale["iterations"] for scale in summary.get("scales", []))
    seconds = sum(scale["seconds"] for scale in summary.get("scales", []))
    return seconds / (work / 1e6) if work else None


def warm_up(device: Any) -> None:
    """A few iterations at each scale of the standard preset at the common sizes, on a GPU only (a
    CPU has no kernels to load and would spend seconds)."""
    if getattr(device, "type", "cpu") != "cuda":
        return
    import numpy as np
    import styletransfer
    from PIL import Image

    gradient = np.linspace(0, 255, 256, dtype=np.uint8)
    picture = Image.fromarray(np.stack([np.outer(gradient, np.ones(384, np.uint8)).astype(np.uint8)] * 3, axis=-1))
    for size in WARM_SIZES:
        options = styletransfer.preset("standard", size=size).replace(iterations=WARM_ITERATIONS)
        styletransfer.run(picture, picture.transpose(Image.Transpose.TRANSPOSE), options)
    gpu_peak_mib(device)  # the first job's peak is its own


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    config = Config.from_environ(environ)
    worker = Worker(config, environ)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    try:
        phases = worker.start()
    except Exception:
        log("worker did not start", workerId=config.worker_id, traceback=traceback.format_exc())
        print("stylize-worker: error: the worker did not start (see the log)", file=sys.stderr, flush=True)
        return 1
    log(
        "stylize-worker ready",
        workerId=config.worker_id,
        phases=phases,
        total=seconds_since_process_start(),
        device=str(worker.device),
        residentMiB=resident_mib(),
    )
    why = worker.serve()
    log("stylize-worker leaving", workerId=config.worker_id, why=why, jobsDone=worker.jobs_done)
    return 0
