"""AWS Batch on this machine: runs the jobs that Step Functions submits to moto's Batch.

    batch = LocalBatch(aws).start()   # one job at a time per GPU, or one on a CPU
    ...                               # the state machine's batch:submitJob.sync reaches it
    batch.stop()                      # kills running jobs and waits for them

With the moto fix `batch_runner` installed (stylelocal.moto_fixes, done by start_moto), a job
submitted to moto's Batch is handed to the registered LocalBatch, and moto's DescribeJobs reports
this runner's view of it, so the .sync poller of Step Functions sees the job's real progress.

A job runs as Batch would run its container:

- the command of the job definition (or of the ContainerOverrides), `python -m stylize_worker`,
  with this interpreter (sys.executable) standing in for the image's `python`; each attempt in a
  process group of its own, so that a timeout or stop() kills everything it started;
- the environment of the job definition (IMAGES_BUCKET, RESULTS_QUEUE_URL, JOBS_TABLE,
  AWS_DEFAULT_REGION, as LocalAws registered them from template.yaml) and of the
  ContainerOverrides (JOB_JSON from the state machine), AWS_BATCH_JOB_ID, AWS_BATCH_JOB_ATTEMPT
  and AWS_BATCH_JQ_NAME, plus AWS_ENDPOINT_URL = moto and fake credentials naming the job role
  (aws.principal_credentials, as ECS gives a task its role's: the local S3 answers the worker as
  S3 answers that role; the host's own AWS_* variables are left out, so that nothing reaches a
  real account) and CUDA_VISIBLE_DEVICES =
  the job's GPU ("" on a CPU);
- states SUBMITTED -> RUNNABLE (waiting for a slot) -> STARTING -> RUNNING -> SUCCEEDED or
  FAILED, with createdAt/startedAt/stoppedAt, statusReason and one entry per attempt;
- the job definition's Timeout (attemptDurationSeconds, or SubmitJob's own) ends an attempt with
  SIGTERM, then SIGKILL after `kill_grace` seconds; a timed-out job is not retried (as in Batch);
- its RetryStrategy: up to `attempts` attempts; after a failed attempt the first evaluateOnExit
  entry whose onExitCode, onStatusReason and onReason globs (a trailing * matches any rest) all
  match decides RETRY or EXIT, and when none matches the job is retried (as in Batch).

The worker's output (stdout and stderr) goes to the logger `stylelocal.batch`, each line
prefixed with the job's name, so the progress of a job can be followed.

Every change of a job's status is published as EventBridge's `Batch Job State Change` event
(`on_state_change`, e.g. stylelocal.events.LocalEvents.publish), as Batch sends it to EventBridge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from queue import Queue
from typing import Any, Protocol

from . import moto_fixes
from .aws import FAKE_CREDENTIALS, principal_credentials
from .moto_fixes import SubmittedJob
from .template import ROOT

log = logging.getLogger(__name__)

SUBMITTED, RUNNABLE, STARTING, RUNNING, SUCCEEDED, FAILED = (
    "SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED",
)  # fmt: skip
DONE = (SUCCEEDED, FAILED)
# Batch's own wording, so that evaluateOnExit rules written for AWS match the same way here
EXITED = "Essential container in task exited"
TIMED_OUT = "Job attempt duration exceeded timeout"
STOPPED = "Terminated: the local Batch runner stopped"
OUTPUT_LINES = 200  # kept per job, for describing a failure


class Aws(Protocol):
    """What LocalBatch needs of stylelocal.aws.LocalAws."""

    endpoint: str
    region: str


@dataclass
class Attempt:
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None  # the container's reason (why it could not run)
    status_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        container: dict[str, Any] = {}
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.reason:
            container["reason"] = self.reason
        found: dict[str, Any] = {"container": container}
        for key, value in (("startedAt", self.started_at), ("stoppedAt", self.stopped_at),
                           ("statusReason", self.status_reason)):  # fmt: skip
            if value is not None:
                found[key] = value
        return found


@dataclass
class LocalJob:
    """One job as this runner sees it (read it through LocalBatch.job(), under its lock)."""

    spec: SubmittedJob
    status: str = SUBMITTED
    status_reason: str | None = None
    created_at: int = 0
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # the container's own variables, last attempt
    command: list[str] = field(default_factory=list)
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES))
    slot: int | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    stop_reason: str | None = None  # set by terminate()/stop(): the attempt ends without a retry

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def name(self) -> str:
        return self.spec.job_name

    def describe(self) -> dict[str, Any]:
        """DescribeJobs' fields that this runner decides (moto_fixes overlays them on moto's)."""
        found: dict[str, Any] = {"status": self.status, "attempts": [a.describe() for a in self.attempts]}
        for key, value in (("statusReason", self.status_reason), ("startedAt", self.started_at),
                           ("stoppedAt", self.stopped_at)):  # fmt: skip
            if value is not None:
                found[key] = value
        if self.attempts:
            found["container"] = self.attempts[-1].describe()["container"]
        return found


def visible_gpus(device: str) -> list[str]:
    """The GPU indices jobs may use ([] = CPU): device "auto" (CUDA when torch sees a GPU), "cpu",
    "cuda" or "cuda:N" (that GPU only)."""
    if device == "cpu":
        return []
    if device.startswith("cuda:"):
        return [device.split(":", 1)[1]]
    if device not in ("auto", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    import torch  # only here: a second of import time, and only to count GPUs

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and count == 0:
        raise ValueError("device cuda was asked for, but torch sees no CUDA GPU")
    return [str(index) for index in range(count)]


def now_ms() -> int:
    return int(time.time() * 1000)


def glob_matches(pattern: str, value: str | None) -> bool:
    """Batch's evaluateOnExit patterns: exact, or a prefix when the pattern ends with '*'."""
    value = value or ""
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def should_retry(strategy: Mapping[str, Any] | None, attempt: int, failed: Attempt) -> bool:
    """Whether Batch retries a job whose attempt number `attempt` (from 1) failed as `failed`
    (a failed attempt: non-zero exit or no container; timeouts and terminations never retry)."""
    strategy = strategy or {}
    if attempt >= int(strategy.get("attempts") or 1):
        return False
    exit_code = None if failed.exit_code is None else str(failed.exit_code)
    for rule in strategy.get("evaluateOnExit") or []:
        conditions = (("onExitCode", exit_code), ("onStatusReason", failed.status_reason), ("onReason", failed.reason))
        if all(glob_matches(rule[key], value) for key, value in conditions if key in rule):
            return str(rule["action"]).upper() == "RETRY"
    return True  # no rule matched (or none given): Batch retries


def container_environment(entries: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """[{name, value}] (or Step Functions' {Name, Value}) as a dict; later entries win."""
    return {e.get("name", e.get("Name", "")): str(e.get("value", e.get("Value", ""))) for e in entries}


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


class LocalBatch:
    """Runs Batch jobs as local processes (see the module's docstring).

    aws: the LocalAws whose moto the jobs talk to (its endpoint becomes AWS_ENDPOINT_URL).
    device: "auto" (CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N" (that GPU only).
    slots: how many jobs run at once; default one per GPU (torch.cuda.device_count()), or 1 on a
        CPU. Slot i runs with CUDA_VISIBLE_DEVICES = its GPU. 0 runs nothing: every job waits
        RUNNABLE, as in an account whose GPU quota is 0.
    command: replaces every job's command (for tests: a fake worker); default the job's own.
    kill_grace: seconds between SIGTERM and SIGKILL when an attempt is stopped (Batch waits 30).
    on_state_change: called with each `Batch Job State Change` event (EventBridge's shape).
    """

    def __init__(
        self,
        aws: Aws,
        device: str = "auto",
        slots: int | None = None,
        command: Sequence[str] | None = None,
        kill_grace: float = 10.0,
        on_state_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.aws = aws
        self.command = list(command) if command is not None else None
        self.kill_grace = kill_grace
        self.gpus = visible_gpus(device)
        self.slots = slots if slots is not None else max(1, len(self.gpus))
        if self.slots < 0:
            raise ValueError("slots must be 0 or more")
        self.on_state_change = on_state_change
        self._jobs: dict[str, LocalJob] = {}
        self._lock = threading.Lock()
        self._queue: Queue[LocalJob | None] = Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def device(self) -> str:
        return f"cuda ({len(self.gpus)} GPU)" if self.gpus else "cpu"

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> LocalBatch:
        """Starts the slots and takes the jobs submitted to moto's Batch from now on."""
        if self._threads:
            raise RuntimeError("LocalBatch is already started")
        for slot in range(self.slots):
            thread = threading.Thread(target=self._slot, args=(slot,), name=f"local-batch-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        moto_fixes.set_batch_runner(self)
        log.info("local Batch: %d slot(s) on %s", self.slots, self.device)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Takes no more jobs, fails the waiting ones, kills the running ones and waits for them."""
        if moto_fixes.batch_runner() is self:
            moto_fixes.set_batch_runner(None)
        with self._lock:
            self._stopping = True
            for job in self._jobs.values():
                if job.status in DONE:
                    continue
                job.stop_reason = job.stop_reason or STOPPED
                if job.process is not None:
                    _signal_group(job.process, signal.SIGTERM)
                elif job.status in (SUBMITTED, RUNNABLE):
                    self._finish(job, FAILED, STOPPED)
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + (timeout if timeout is not None else self.kill_grace + 5)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # past the grace period: nothing may outlive the stack
                with self._lock:
                    for job in self._jobs.values():
                        if job.process is not None:
                            _signal_group(job.process, signal.SIGKILL)
                thread.join(5)
        self._threads = []

    def __enter__(self) -> LocalBatch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- moto_fixes.BatchRunner -------------------------------------------------------------

    def submit(self, job: SubmittedJob) -> None:
        record = LocalJob(spec=job, created_at=job.created_at or now_ms())
        with self._lock:
            self._jobs[job.job_id] = record
            if self._stopping:
                self._finish(record, FAILED, STOPPED)
                return
            record.status = RUNNABLE
            self._changed(record)
        log.info("batch job %s (%s) submitted to %s", job.job_name, job.job_id, job.job_queue)
        self._queue.put(record)

    def status(self, job_id: str) -> str | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.status if job else None

    def describe(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.describe() if job else None

    def terminate(self, job_id: str, reason: str) -> None:
        """TerminateJob / CancelJob: a waiting job fails now, a running one is killed; no retry."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in DONE:
                return
            job.stop_reason = reason
            if job.process is not None:
                _signal_group(job.process, signal.SIGTERM)
                process = job.process
            elif job.status in (SUBMITTED, RUNNABLE):
                self._finish(job, FAILED, reason)
                return
            else:
                return  # STARTING: the slot sees stop_reason before it starts the process
        threading.Timer(self.kill_grace, _kill_if_alive, args=(process,)).start()

    # --- looking at jobs --------------------------------------------------------------------

    def job(self, job_id: str) -> LocalJob | None:
        """The job's record (a live object: read it while jobs run only through describe())."""
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[LocalJob]:
        with self._lock:
            return list(self._jobs.values())

    def wait(self, job_id: str, timeout: float) -> str:
        """Waits until the job has ended; its final status."""
        deadline = time.monotonic() + timeout
        while (status := self.status(job_id)) not in DONE:
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch job {job_id} is still {status} after {timeout} s")
            time.sleep(0.05)
        return status

    # --- running ----------------------------------------------------------------------------

    def _finish(self, job: LocalJob, status: str, reason: str | None, at: int | None = None) -> None:
        """Ends the job (under the lock); `at` is when its last attempt stopped, if one ran."""
        job.status, job.status_reason, job.stopped_at = status, reason, at if at is not None else now_ms()
        job.process = None
        self._changed(job)
        log.info("batch job %s %s%s", job.name, status, f": {reason}" if reason and status == FAILED else "")

    def _changed(self, job: LocalJob) -> None:
        """Publish the job's new status (under the lock: the listener only starts its work)."""
        if self.on_state_change is None:
            return
        spec = job.spec
        queue_arn = f"arn:aws:batch:{self.aws.region}:{spec.job_arn.split(':')[4]}:job-queue/{spec.job_queue}"
        detail = {
            "jobName": spec.job_name,
            "jobId": spec.job_id,
            "jobArn": spec.job_arn,
            "jobQueue": queue_arn,
            "createdAt": job.created_at,
            "jobDefinition": spec.job_definition.get("jobDefinitionArn"),
            "parameters": dict(spec.parameters),
            **job.describe(),
        }
        try:
            self.on_state_change(
                {"detail-type": "Batch Job State Change", "source": "aws.batch", "resources": [spec.job_arn],
                 "detail": detail}
            )  # fmt: skip
        except Exception:  # a listener's failure must not stop a job
            log.exception("batch job %s: its state change was not published", job.name)

    def _slot(self, slot: int) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._run(job, slot)
            except Exception:  # a bug here must not take the slot (and every later job) down
                log.exception("batch job %s: the local runner failed", job.name)
                with self._lock:
                    if job.status not in DONE:
                        self._finish(job, FAILED, "the local Batch runner failed (see its log)")

    def _run(self, job: LocalJob, slot: int) -> None:
        with self._lock:
            if job.status in DONE:  # terminated or stopped while it waited
                return
            job.status, job.slot = STARTING, slot
            self._changed(job)
            number = len(job.attempts) + 1
            attempt = Attempt()
            job.attempts.append(attempt)
            job.environment = self._environment(job, slot, number)
            job.command = self._command(job)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **job.environment}
        gpu = f" on GPU {job.environment['CUDA_VISIBLE_DEVICES']}" if self.gpus else " on the CPU"
        log.info("batch job %s (%s) attempt %d starting%s", job.name, job.job_id, number, gpu)
        try:
            process = subprocess.Popen(
                job.command,
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                start_new_session=True,  # its own process group: a kill reaches all it started
            )
        except OSError as failure:
            with self._lock:
                attempt.started_at = attempt.stopped_at = now_ms()
                attempt.reason = f"CannotStartContainerError: {failure}"
                attempt.status_reason = "Task failed to start"
            self._after_attempt(job, attempt, number, timed_out=False)
            return
        with self._lock:
            job.process = process
            job.status = RUNNING
            self._changed(job)
            job.started_at = attempt.started_at = now_ms()
            stop_reason = job.stop_reason
        if stop_reason is not None:  # terminated while STARTING
            _signal_group(process, signal.SIGTERM)
            threading.Timer(self.kill_grace, _kill_if_alive, args=(process,)).start()
        reader = threading.Thread(target=self._read_output, args=(job, process), daemon=True)
        reader.start()
        timed_out = False
        try:
            process.wait(timeout=self._attempt_duration(job))
        except subprocess.TimeoutExpired:
            timed_out = True
            log.info("batch job %s attempt %d: %s", job.name, number, TIMED_OUT)
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=self.kill_grace)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        reader.join(5)
        code = process.returncode
        with self._lock:
            attempt.stopped_at = now_ms()
            attempt.exit_code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as Docker reports
            attempt.status_reason = TIMED_OUT if timed_out else (job.stop_reason or EXITED)
        self._after_attempt(job, attempt, number, timed_out)

    def _after_attempt(self, job: LocalJob, attempt: Attempt, number: int, timed_out: bool) -> None:
        with self._lock:
            job.process = None
            if attempt.exit_code == 0 and job.stop_reason is None and not timed_out:
                self._finish(job, SUCCEEDED, EXITED, attempt.stopped_at)
                return
            retry = (
                not timed_out
                and job.stop_reason is None
                and not self._stopping
                and should_retry(job.spec.job_definition.get("retryStrategy"), number, attempt)
            )
            if not retry:
                self._finish(job, FAILED, job.stop_reason or attempt.status_reason, attempt.stopped_at)
                return
            job.status = RUNNABLE
            self._changed(job)
        log.info("batch job %s attempt %d failed (exit %s); retrying", job.name, number, attempt.exit_code)
        self._queue.put(job)

    def _read_output(self, job: LocalJob, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            with self._lock:
                job.output.append(line)
            log.info("[%s] %s", job.name, line)

    def _attempt_duration(self, job: LocalJob) -> float | None:
        timeout = job.spec.timeout or job.spec.job_definition.get("timeout") or {}
        seconds = timeout.get("attemptDurationSeconds")
        return float(seconds) if seconds else None

    def _command(self, job: LocalJob) -> list[str]:
        if self.command is not None:
            return list(self.command)
        container = job.spec.job_definition.get("containerProperties") or {}
        command = list(job.spec.container_overrides.get("command") or container.get("command") or [])
        if not command:
            raise ValueError(f"batch job {job.name}: its job definition has no command")
        if command[0] in ("python", "python3"):  # the image's interpreter is this one here
            command[0] = sys.executable
        parameters = job.spec.parameters
        return [_substitute(part, parameters) for part in command]

    @staticmethod
    def _credentials(container: Mapping[str, Any]) -> dict[str, str]:
        """As ECS gives a task its job role's credentials: fake ones naming the role, so that the
        local S3 answers the worker as S3 answers that role; a job without a role gets the plain
        fake ones."""
        role = _job_role(container)
        return principal_credentials(role) if role else dict(FAKE_CREDENTIALS)

    def _environment(self, job: LocalJob, slot: int, attempt: int) -> dict[str, str]:
        """The container's own variables (the host's environment, less AWS_*, comes beneath)."""
        container = job.spec.job_definition.get("containerProperties") or {}
        return {
            **container_environment(container.get("environment") or []),
            **container_environment(job.spec.container_overrides.get("environment") or []),
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt),
            "AWS_BATCH_JQ_NAME": job.spec.job_queue,
            "AWS_ENDPOINT_URL": self.aws.endpoint,
            "AWS_REGION": self.aws.region,
            **self._credentials(container),
            "CUDA_VISIBLE_DEVICES": self.gpus[slot % len(self.gpus)] if self.gpus else "",
            "PYTHONUNBUFFERED": "1",  # progress lines as they happen, not when a buffer fills
        }


def _job_role(container: Mapping[str, Any]) -> str | None:
    """The job role's name (the template's logical id, as LocalAws names roles) from its ARN."""
    arn = str(container.get("jobRoleArn") or "")
    return arn.rsplit(":role/", 1)[1].rsplit("/", 1)[-1] if ":role/" in arn else None


def _kill_if_alive(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        _signal_group(process, signal.SIGKILL)


def _substitute(part: str, parameters: Mapping[str, str]) -> str:
    """Batch's Ref::name placeholders in a command, from the job's parameters."""
    for name, value in parameters.items():
        part = part.replace(f"Ref::{name}", str(value))
    return part
