"""Small patches that close eight gaps of moto 5.2.5, so that the real state machine can hand a
job to the pool's workers and invoke a function locally, the local Batch runner can run the
workers, and the bucket is as strict as S3. Each one refuses any other moto version: they patch
private code.

batch_runner
    moto's Batch runs a job in a Docker container (and without a Docker daemon marks it FAILED;
    the batch_simple backend marks it SUCCEEDED) without ever running anything here. The fix
    hands each submitted job to the registered runner (`set_batch_runner`, implemented by
    stylelocal.batch.LocalBatch) and makes the job's status, statusReason, timestamps, attempts
    and container exit code in describe_jobs/list_jobs those of the runner, so that the scaler
    sees real progress and failure. TerminateJob/CancelJob reach the runner. It also
    stops moto's describe from appending the job definition's environment to the job's
    overrides on every call (which grows a polled job's description without bound). With no
    runner registered a job fails at once with a reason that says so.

lambda_invoker
    Step Functions' `arn:aws:states:::lambda:invoke` calls moto's Lambda, which runs functions
    only in Docker and knows none of the template's. The fix hands the invocation to the
    registered invoker (`set_lambda_invoker`, the local stack's LambdaRuntime: the function's own
    process and environment), with the function's name taken from its ARN, and reports a failed
    invocation as Lambda does (FunctionError), so the state's Retry and Catch apply. With no
    invoker registered moto's own path runs (and fails: it has no such function).

batch_threads
    moto's server answers each request on a thread of its own, and its Batch backend walks its
    table of jobs in DescribeJobs while a SubmitJob on another thread may add to it: now and then
    "dictionary changed size during iteration", a 500 that botocore retries, and a traceback in the
    stack's log (seen in the end-to-end tests, where several jobs start at once). The fix gives the
    table one lock, held by SubmitJob, DescribeJobs and the backend's reset.

task_tokens
    Three gaps in `.waitForTaskToken`, which the worker pool's task (statemachine: PaintOnWorker)
    meets on every job. (1) moto arms a task's heartbeat clock only after the task's SQS message
    is sent, and until then answers SendTaskHeartbeat with InvalidToken: a worker that takes the
    message at once (a warm one, long-polling) was told its token was stale. In AWS a token is
    valid from the moment its task starts. The fix accepts the heartbeat of a token whose task is
    waiting (its clock, once armed, starts from there). (2) moto's SendTaskFailure drops the
    request's `cause`, so the worker's reason for the user never reached the state machine's
    Catch; the fix passes it on, as AWS does. (3) A task whose heartbeat lapsed failed as
    States.Timeout (moto takes every TimeoutError for one), so a Catch could not tell "no worker
    took the job" from "the job ran past its timeout"; the fix fails it as
    States.HeartbeatTimeout, as AWS does. (4) StopExecution (a job cancelled) did not reach a
    task waiting for its token until its heartbeat clock next ran out: moto looks for the stop
    only between waits, so the execution stayed RUNNING, and its token valid, for up to
    HeartbeatSeconds, and its worker painted on. In AWS the task ends at once and its token is
    refused; the fix forgets the tokens of a stopped execution (InvalidToken), so its worker
    stops painting at its next heartbeat.

parallel_errors
    A Parallel state re-raises a failed branch's error as a custom error name, which moto refuses
    for the States.* errors ("Custom Error Names MUST NOT begin with the prefix 'States.'"): a
    branch whose task timed out (States.HeartbeatTimeout, States.Timeout) crashed the whole
    execution instead of reaching the Parallel's Catch, as it does in AWS. The state machine's
    painting branch meets exactly that when no worker takes a job. The fix re-raises a States.*
    error under its own name.

s3_presigned
    moto stores a browser-based POST upload whatever its policy says and serves a presigned GET
    whose signature was tampered with. The fix checks both as S3 does (stylelocal.s3_auth: the
    policy's signature, expiry and every condition; the GET's SigV4 query signature and
    expiry) and answers S3's errors (403 AccessDenied / SignatureDoesNotMatch, 400
    EntityTooLarge ...), so that a wrong policy fails the local tests as it would fail in AWS.

s3_missing_keys
    S3 answers a GET or HEAD of a key that does not exist with 404 NoSuchKey only when the caller
    may list the bucket there (s3:ListBucket with s3:prefix = the key); otherwise with 403
    AccessDenied, so that a caller learns nothing of keys it may not list. moto always answers 404.
    The fix answers as S3 does for the template's principals: each function and the worker sign
    with an access key naming their principal (aws.principal_credentials), and what that
    principal's identity policy allows (`set_principals`, registered by LocalAws) is evaluated by
    stylelocal.iam. Requests signed with any other key (the tests', the harness's) get moto's 404.

s3_copy_if_match
    CopyObject with x-amz-copy-source-if-match (boto3's CopySourceIfMatch) copies only when the
    source's ETag is the one given, and otherwise answers 412 PreconditionFailed; moto copies
    whatever the source holds now. TRANSFER_STYLE copies an upload pinned to the version it checked
    this way, so the local stack must refuse a copy of a version that changed, as S3 does.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import moto

MOTO_VERSION = "5.2.5"
NO_RUNNER_REASON = "no local Batch runner is running (stylelocal.batch.LocalBatch) to run this job"


class MotoVersionError(RuntimeError):
    pass


def check_version() -> None:
    if moto.__version__ != MOTO_VERSION:
        raise MotoVersionError(
            f"stylelocal.moto_fixes patches private code of moto {MOTO_VERSION}, but moto {moto.__version__} is "
            f"installed: install moto[server]=={MOTO_VERSION} (pyproject.toml's dev extra) or port the fixes "
            "in local/stylelocal/moto_fixes.py to this version and re-run tests/local/test_moto_fixes.py"
        )


# --- batch_runner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmittedJob:
    """What a runner gets of a job submitted to moto's Batch (API shapes, camelCase)."""

    job_id: str
    job_name: str
    job_arn: str
    job_queue: str  # name
    job_definition: dict[str, Any]  # DescribeJobDefinitions' entry: containerProperties, retryStrategy, timeout
    container_overrides: dict[str, Any] = field(default_factory=dict)  # environment [{name, value}], command, ...
    timeout: dict[str, Any] | None = None  # SubmitJob's own timeout, which wins over the definition's
    parameters: dict[str, str] = field(default_factory=dict)
    created_at: int = 0  # epoch ms


class BatchRunner(Protocol):
    """What moto's Batch asks of the runner (stylelocal.batch.LocalBatch implements it)."""

    def submit(self, job: SubmittedJob) -> None: ...

    def status(self, job_id: str) -> str | None:
        """SUBMITTED, RUNNABLE, STARTING, RUNNING, SUCCEEDED or FAILED; None for an unknown job."""

    def describe(self, job_id: str) -> dict[str, Any] | None:
        """DescribeJobs' fields that the runner knows: status, statusReason, startedAt, stoppedAt,
        attempts, container {exitCode, reason, logStreamName}."""

    def terminate(self, job_id: str, reason: str) -> None: ...


_runner: BatchRunner | None = None
_runner_lock = threading.Lock()
_RUNNER_ATTRIBUTE = "_stylelocal_runner"  # set on moto's Job: the runner that took it


def set_batch_runner(runner: BatchRunner | None) -> None:
    """Registers the runner that takes the jobs submitted from now on (None: no runner). A job
    stays with the runner that took it, also after another is registered."""
    global _runner
    with _runner_lock:
        if runner is not None and _runner is not None and _runner is not runner:
            raise RuntimeError("another Batch runner is registered; stop it first")
        _runner = runner


def batch_runner() -> BatchRunner | None:
    return _runner


def _submitted(job: Any) -> SubmittedJob:
    from moto.batch.models import datetime2int_milliseconds

    return SubmittedJob(
        job_id=job.job_id,
        job_name=job.job_name,
        job_arn=job.arn,
        job_queue=job.job_queue.name,
        job_definition=copy.deepcopy(job.job_definition.describe()),
        container_overrides=copy.deepcopy(job.container_overrides),
        timeout=copy.deepcopy(job.timeout),
        parameters=dict(job.parameters or {}),
        created_at=datetime2int_milliseconds(job.job_created_at),
    )


def _install_batch_runner() -> Callable[[], None]:
    from moto.batch.models import Job
    from moto.moto_api._internal.managed_state_model import ManagedState

    describe_short, describe, terminate = Job.describe_short, Job.describe, Job.terminate
    managed_status = ManagedState.status

    def run(self: Any) -> None:
        """The job's thread (started by submit_job): hand the job to the runner, run nothing here."""
        runner = _runner
        if runner is None or self.stop:  # no runner, or cancelled before this thread ran
            if self.job_stopped_reason is None:
                self.job_stopped_reason = NO_RUNNER_REASON
            self._mark_stopped(success=False)
            return
        setattr(self, _RUNNER_ATTRIBUTE, runner)
        runner.submit(_submitted(self))

    def status(self: Any) -> str | None:
        runner = getattr(self, _RUNNER_ATTRIBUTE, None)
        known = runner.status(self.job_id) if runner is not None else None
        return known if known is not None else managed_status.fget(self)

    def overlay(self: Any, result: dict[str, Any]) -> dict[str, Any]:
        runner = getattr(self, _RUNNER_ATTRIBUTE, None)
        view = runner.describe(self.job_id) if runner is not None else None
        if view is None:
            return result
        for key in ("statusReason", "startedAt", "stoppedAt"):  # moto's own values are placeholders
            result.pop(key, None)
        result.update({k: copy.deepcopy(v) for k, v in view.items() if k != "container"})
        if "container" in view:
            result["container"] = {**result.get("container", {}), **view["container"]}
        return result

    def patched_describe_short(self: Any) -> dict[str, Any]:
        return overlay(self, describe_short(self))

    def patched_describe(self: Any) -> dict[str, Any]:
        # moto's _container_details appends the definition's environment and AWS_BATCH_JOB_ID to
        # the overrides' own list on every call; describe a copy
        overrides = self.container_overrides
        self.container_overrides = copy.deepcopy(overrides)
        try:
            return overlay(self, describe(self))
        finally:
            self.container_overrides = overrides

    def patched_terminate(self: Any, reason: str) -> None:
        runner = getattr(self, _RUNNER_ATTRIBUTE, None)
        if runner is None:
            terminate(self, reason)
        else:
            runner.terminate(self.job_id, reason)

    return _patch(
        Job,
        {
            "run": run,
            "status": property(status, managed_status.fset),
            "describe_short": patched_describe_short,
            "describe": patched_describe,
            "terminate": patched_terminate,
        },
    )


# --- batch_threads ------------------------------------------------------------------------------

_batch_table_lock = threading.RLock()


def _install_batch_threads() -> Callable[[], None]:
    from moto.batch.models import BatchBackend

    def holding_the_table(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _batch_table_lock:
                return method(self, *args, **kwargs)

        return call

    methods = ("submit_job", "describe_jobs", "reset")  # what adds to the table, and what walks it
    return _patch(BatchBackend, {name: holding_the_table(vars(BatchBackend)[name]) for name in methods})


# --- lambda_invoker -----------------------------------------------------------------------------

# (function name, event) -> (the function's result or error payload, whether it failed)
LambdaInvoker = Callable[[str, Any], tuple[Any, bool]]
_invoker: LambdaInvoker | None = None


def set_lambda_invoker(invoker: LambdaInvoker | None) -> None:
    """Registers what runs the functions that state machines invoke from now on (None: moto's own)."""
    global _invoker
    _invoker = invoker


def function_name(name_or_arn: str) -> str:
    """A function's name from its name or ARN (arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>])."""
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


def _install_lambda_invoker() -> Callable[[], None]:
    import json

    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    original = lambda_eval_utils._invoke_lambda_function

    def invoke(parameters: dict, region: str, state_credentials: Any) -> dict[str, Any]:
        invoker = _invoker
        if invoker is None:
            return original(parameters, region, state_credentials)
        payload = parameters.get("Payload") or b"{}"  # the task's Payload, as the bytes Lambda gets
        result, failed = invoker(function_name(str(parameters["FunctionName"])), json.loads(payload))
        response: dict[str, Any] = {"StatusCode": 200, "Payload": result, "ExecutedVersion": "$LATEST"}
        if failed:
            response["FunctionError"] = "Unhandled"
        return response

    return _patch(lambda_eval_utils, {"_invoke_lambda_function": invoke})


# --- task_tokens --------------------------------------------------------------------------------


def _install_task_tokens() -> Callable[[], None]:
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, HeartbeatTimeoutError
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.responses import StepFunctionResponse

    def notify_heartbeat(self: Any) -> bool:
        if self._heartbeat_endpoint is not None:
            self._heartbeat_endpoint.notify()
        return True  # the task waits on this token; its heartbeat clock is armed a moment later

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    def heartbeat_timed_out(env: Any) -> Any:
        return FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout),
            event_type=HistoryEventType.TaskTimedOut,
            event_details=EventDetails(
                taskTimedOutEventDetails=TaskTimedOutEventDetails(
                    error=StatesErrorNameType.StatesHeartbeatTimeout.to_name()
                )
            ),
        )

    from_error = StateTask._from_error

    def task_from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, HeartbeatTimeoutError):
            return heartbeat_timed_out(env)
        return from_error(self, env, ex)

    set_stop = Environment.set_stop

    def stop_and_refuse(self: Any, stop_date: Any, cause: Any, error: Any) -> None:
        set_stop(self, stop_date=stop_date, cause=cause, error=error)
        self.callback_pool_manager._pool.clear()  # its tokens: heartbeats and answers are refused

    undoes = [
        _patch(Environment, {"set_stop": stop_and_refuse}),
        _patch(CallbackEndpoint, {"notify_heartbeat": notify_heartbeat}),
        _patch(StepFunctionResponse, {"send_task_failure": send_task_failure}),
        _patch(StateTask, {"_from_error": task_from_error}),
    ]

    def undo() -> None:
        for each in undoes:
            each()

    return undo


# --- parallel_errors ----------------------------------------------------------------------------


def _install_parallel_errors() -> Callable[[], None]:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def error_name(error_name: str) -> Any:
        if error_name.startswith("States."):
            return StatesErrorName.from_name(error_name)
        return CustomErrorName(error_name=error_name)

    return _patch(branches_decl, {"CustomErrorName": error_name})


# --- s3_presigned -------------------------------------------------------------------------------


def _secrets() -> dict[str, str]:
    """The local stack's signing keys: the fake credentials, and each registered principal's
    (aws.principal_credentials), all with the fake secret."""
    from .aws import FAKE_CREDENTIALS, principal_credentials

    keys = [FAKE_CREDENTIALS, *(principal_credentials(p) for p in _principals)]
    return {k["AWS_ACCESS_KEY_ID"]: k["AWS_SECRET_ACCESS_KEY"] for k in keys}


def _install_s3_presigned() -> Callable[[], None]:
    from moto.s3.responses import S3Response

    from . import s3_auth

    post, key_response = S3Response._bucket_response_post, S3Response._key_response

    def refused(failure: s3_auth.Refused) -> tuple[int, dict[str, str], str]:
        return failure.status, {"Content-Type": "application/xml"}, failure.xml()

    def patched_post(self: Any, request: Any, bucket_name: str) -> Any:
        if request.headers.get("Content-Length") and "delete" not in self.querystring:  # a browser-style upload
            form = dict(self.form_data.items())  # the form's own fields (querystring also has moto's)
            body = self.body if isinstance(self.body, bytes | bytearray) else str(self.body or "").encode()
            try:
                s3_auth.check_post(form, len(body), bucket_name, _secrets())
            except s3_auth.Refused as failure:
                return refused(failure)
        return post(self, request, bucket_name)

    def patched_key_response(self: Any, request: Any, full_url: str) -> Any:
        url = getattr(request, "raw_url", None) or full_url
        if request.method in ("GET", "HEAD") and "X-Amz-Signature=" in url and "Authorization" not in request.headers:
            try:
                s3_auth.check_presigned_query(request.method, url, dict(request.headers), _secrets())
            except s3_auth.Refused as failure:
                return refused(failure)
        return key_response(self, request, full_url)

    return _patch(S3Response, {"_bucket_response_post": patched_post, "_key_response": patched_key_response})


# --- s3_missing_keys ----------------------------------------------------------------------------

_principals: dict[str, list[dict[str, Any]]] = {}  # principal -> its resolved identity statements


def set_principals(statements: dict[str, list[dict[str, Any]]]) -> None:
    """Registers each principal's identity policy (resolved statements), replacing the previous ones."""
    global _principals
    _principals = dict(statements)


def _access_key(request: Any, full_url: str) -> str:
    """The access key id a request is signed with: its Authorization header's or its query's credential."""
    found = re.search(r"Credential=([^/,\s]+)/", request.headers.get("Authorization", ""))
    if found:
        return found.group(1)
    url = getattr(request, "raw_url", None) or full_url
    found = re.search(r"[?&](?:X-Amz-Credential|AWSAccessKeyId)=([^/&%]+)", url, re.IGNORECASE)
    return found.group(1) if found else ""


def may_list(principal: str, bucket: str, key: str) -> bool | None:
    """Whether `principal` may list `bucket` at `key` (S3's test before it says a key is missing);
    None for a principal that is not registered."""
    from . import iam

    statements = _principals.get(principal)
    if statements is None:
        return None
    return iam.allows(statements, iam.Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": key}))


def _install_s3_missing_keys() -> Callable[[], None]:
    from moto.s3.responses import S3Response

    from . import s3_auth
    from .aws import principal_of

    key_response = S3Response.key_response
    denied = s3_auth.Refused(403, "AccessDenied", "Access Denied").xml()

    def patched_key_response(self: Any, request: Any, full_url: str, headers: dict[str, Any]) -> Any:
        answer = key_response(self, request, full_url, headers)
        if answer[0] != 404 or request.method not in ("GET", "HEAD"):
            return answer
        principal = principal_of(_access_key(request, full_url))
        if principal is None:
            return answer
        bucket, key = self.parse_bucket_name_from_url(request, full_url), self.parse_key_name()
        try:
            self.backend.get_bucket(bucket)  # NoSuchBucket stays 404, as in S3
        except Exception:
            return answer
        if self.backend.get_object(bucket, key) is not None or may_list(principal, bucket, key) is not False:
            return answer  # a missing version, or a caller who may list: S3's 404
        if request.method == "HEAD":
            return 403, {}, ""
        return 403, {"Content-Type": "application/xml"}, denied

    return _patch(S3Response, {"key_response": patched_key_response})


# --- s3_copy_if_match ---------------------------------------------------------------------------


def _install_s3_copy_if_match() -> Callable[[], None]:
    from urllib.parse import unquote, urlparse

    from moto.s3.exceptions import PreconditionFailed
    from moto.s3.responses import S3Response

    copy_object = S3Response.copy_object

    def patched_copy_object(self: Any) -> Any:
        wanted = self.headers.get("x-amz-copy-source-if-match")
        if wanted is not None:
            source = self.headers.get("x-amz-copy-source")
            source = source.decode() if isinstance(source, bytes) else str(source)
            parsed = urlparse(source)
            bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
            found = self.backend.get_object(bucket, key)
            if found is not None and wanted.strip('"') != found.etag.strip('"'):
                raise PreconditionFailed(failed_condition="x-amz-copy-source-If-Match")
        return copy_object(self)

    return _patch(S3Response, {"copy_object": patched_copy_object})


# --- installing ---------------------------------------------------------------------------------

FIXES: dict[str, Callable[[], Callable[[], None]]] = {
    "batch_runner": _install_batch_runner,
    "batch_threads": _install_batch_threads,
    "lambda_invoker": _install_lambda_invoker,
    "task_tokens": _install_task_tokens,
    "parallel_errors": _install_parallel_errors,
    "s3_presigned": _install_s3_presigned,
    "s3_missing_keys": _install_s3_missing_keys,
    "s3_copy_if_match": _install_s3_copy_if_match,
}
_undo: dict[str, Callable[[], None]] = {}
_install_lock = threading.Lock()


def _patch(cls: Any, attributes: dict[str, Any]) -> Callable[[], None]:
    """Sets attributes on a class (or a module); the returned function puts back exactly what was there."""
    missing = object()
    saved = {name: cls.__dict__.get(name, missing) for name in attributes}
    for name, value in attributes.items():
        setattr(cls, name, value)

    def undo() -> None:
        for name, value in saved.items():
            if value is missing:
                delattr(cls, name)
            else:
                setattr(cls, name, value)

    return undo


def install(names: Iterable[str] | None = None) -> list[str]:
    """Installs the named fixes (None: all of them) that are not installed yet, and returns those
    it installed. Raises MotoVersionError, before patching anything, on another moto."""
    check_version()
    wanted = list(FIXES if names is None else names)
    for name in wanted:
        if name not in FIXES:
            raise KeyError(f"no moto fix called {name!r}; there are {sorted(FIXES)}")
    installed = []
    with _install_lock:
        for name in wanted:
            if name not in _undo:
                _undo[name] = FIXES[name]()
                installed.append(name)
    return installed


def uninstall(names: Iterable[str] | None = None) -> None:
    """Removes the named fixes (None: all of them) that are installed."""
    with _install_lock:
        for name in FIXES if names is None else names:
            if (undo := _undo.pop(name, None)) is not None:
                undo()


def installed() -> set[str]:
    return set(_undo)
