"""Lambda on this machine: every function of template.yaml runs in long-lived worker processes of
its own, as warm Lambda containers do.

`LambdaRuntime(aws, overrides)` invokes a function by its logical id the way `sam local invoke`
would, but keeps the process between invocations:

- the handler is the template's (`Handler` under `CodeUri`, imported as Lambda imports it: the
  code folder first on sys.path, then the layers' folders, the way /var/task and /opt/python come
  first in Lambda), imported once per process before the first invocation (Lambda's init phase,
  not counted against the timeout);
- the environment is only what the function would get: the template's variables
  (`aws.environment(logical_id)`, which holds the Globals, AWS_ENDPOINT_URL pointing at moto and
  sam local's additions), `overrides` for variables the function has (such as WEBSOCKET_ENDPOINT
  -> the local gateway's management endpoint), credentials, and Lambda's own variables; a function
  that reaches @connections (it declares WEBSOCKET_ENDPOINT) also gets the local gateway's secret
  (`local_variables`, see stylelocal.gateway). Nothing else of the caller's environment leaks in,
  so two functions never see each other's settings;
- each function has a small pool of processes (`max_concurrency`, 4 by default): concurrent
  invocations of one function run in parallel, as Lambda scales out, and a fifth waits for a free
  one; module state (clients, caches) persists in a process between invocations;
- an invocation that runs past the function's `Timeout` is stopped (its process is killed, as
  Lambda discards a timed-out sandbox) and reported as Lambda reports it; a handler's exception
  becomes Lambda's error payload ({"errorMessage", "errorType", "requestId", "stackTrace"}) and the
  process keeps serving.

`invoke` returns what Lambda's Invoke API would return as the payload: the handler's result, or
for a failed invocation a `FunctionError` (a dict holding the error payload; `isinstance` tells a
failure from a result). It is thread-safe.

The workers speak JSON lines over pipes: the parent writes one request per line on the worker's
stdin and reads one answer per line from a copy of its stdout; the function's own stdout and
stderr (its logs, with Lambda's START/END/REPORT lines) go to the worker's stderr, which the
runtime forwards (`logs`).
"""

from __future__ import annotations

import contextlib
import decimal
import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Literal

REGION = "us-east-1"
ACCOUNT = "123456789012"
RUNTIME = "python3.12"  # the template's Runtime (Globals): what AWS_EXECUTION_ENV names
DEFAULT_MAX_CONCURRENCY = 4
# Lambda gives a cold start's init phase 10 s; a 2-core machine starting several interpreters at
# once (boto3, powertools, pydantic) can need longer, and a slow start is not the function's fault.
INIT_TIMEOUT_SECONDS = 60.0
# Variables of the caller's environment a process needs to run at all (not configuration).
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SYSTEMROOT")
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

LogSink = Callable[[str, str], None] | Literal["inherit", "discard"]


class FunctionError(dict):
    """The payload of a failed invocation, as Lambda reports it: `errorMessage`, `errorType`
    and, for a handler's exception, `requestId` and `stackTrace`.

    A dict, so that it can be passed on as the payload; its type says that the invocation failed
    (Lambda's Invoke API says so in the X-Amz-Function-Error header)."""

    @property
    def error_type(self) -> str:
        return str(self.get("errorType", ""))

    @property
    def message(self) -> str:
        return str(self.get("errorMessage", ""))


class RuntimeClosedError(RuntimeError):
    """An invocation after (or cut short by) `LambdaRuntime.close()`."""


@dataclass(frozen=True)
class FunctionConfig:
    """What the runtime reads of one function in template.yaml (Globals applied)."""

    logical_id: str
    code_dir: Path
    handler: str
    timeout: float
    memory_mb: int
    layer_dirs: tuple[Path, ...]
    # None: a template function, whose variables come from the local AWS (`aws.environment`);
    # else the variables of a function defined here rather than in template.yaml
    environment: dict[str, str] | None = field(default=None, hash=False, compare=False)

    @classmethod
    def from_template(cls, logical_id: str) -> FunctionConfig:
        template = _template()
        props = template.function(logical_id)
        layers = []
        for layer in props.get("Layers", []):
            # !Ref to a layer of this template: its ContentUri is the folder Lambda mounts at /opt
            # (source layout: the folder is the import root, as /opt/python is after sam build)
            name = layer.get("Ref") if isinstance(layer, dict) else None
            resource = template.resources().get(name or "")
            if resource is None or resource["Type"] != "AWS::Serverless::LayerVersion":
                raise ValueError(f"{logical_id}: layer {layer!r} is not a layer of template.yaml")
            layers.append(template.ROOT / resource["Properties"]["ContentUri"])
        return cls(
            logical_id=logical_id,
            code_dir=template.ROOT / props["CodeUri"],
            handler=props["Handler"],
            timeout=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            layer_dirs=tuple(layers),
        )


def _template() -> ModuleType:
    # Imported when first needed: the worker processes run this module too, and need no YAML.
    from . import template

    return template


def _new_request_id() -> str:
    return str(uuid.uuid4())


def _stream_name() -> str:
    return f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"


# --- the parent's side ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    """One warm process of a function."""

    config: FunctionConfig
    process: subprocess.Popen[bytes]
    answers: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    threads: list[threading.Thread] = field(default_factory=list)
    retire: bool = False  # overrides changed while it was busy: stop it when it comes back

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()


class _Pool:
    """The processes of one function: idle ones are reused, up to `limit` exist at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.idle: list[_Worker] = []
        self.busy: set[_Worker] = set()
        self.starting = 0
        self.cond = threading.Condition()

    def size(self) -> int:
        return len(self.idle) + len(self.busy) + self.starting

    def started(self, worker: _Worker | None, busy: bool = False) -> None:
        """One start ended: `worker` joins the idle or busy ones (None: the start failed)."""
        with self.cond:
            self.starting -= 1
            if worker is not None:
                (self.busy.add if busy else self.idle.append)(worker)
            self.cond.notify_all()


class LambdaRuntime:
    """The template's functions, each in warm worker processes of its own (see the module docstring).

    `aws` is the local AWS (`stylelocal.aws.LocalAws`): its `environment(logical_id)` is the
    function's environment. `overrides` replace values of variables the function has in the
    template (others are ignored, as a function never gets variables it does not declare); they
    are read when a process starts, so set them before the first invocation, or call
    `update_overrides`, which retires the warm processes.
    `logs`: "inherit" (the functions' logs go to this process's stderr), "discard", or a callable
    receiving (logical_id, line) for every line a function logs.
    `functions`: functions that are not in template.yaml (their `environment` is all they get),
    for trying the runtime itself.
    """

    def __init__(
        self,
        aws: Any,
        overrides: dict[str, str] | None = None,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        logs: LogSink = "inherit",
        functions: Iterable[FunctionConfig] = (),
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.aws = aws
        self.overrides: dict[str, str] = dict(overrides or {})
        # what the local stack adds to the environment of the functions that reach @connections
        # (those that declare WEBSOCKET_ENDPOINT): the local gateway's secret
        self.local_variables: dict[str, str] = {}
        self.max_concurrency = max_concurrency
        self.logs = logs
        self._configs: dict[str, FunctionConfig] = {config.logical_id: config for config in functions}
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._spawning: set[_Worker] = set()  # processes in their init: close() stops them too

    # --- public -------------------------------------------------------------------------------

    def functions(self) -> list[str]:
        """The logical ids of every function: template.yaml's and those given to the runtime."""
        return sorted({*_template().resources("AWS::Serverless::Function"), *self._configs})

    def config(self, logical_id: str) -> FunctionConfig:
        with self._lock:
            if logical_id not in self._configs:
                if logical_id not in _template().resources("AWS::Serverless::Function"):
                    raise KeyError(f"no function {logical_id} in template.yaml")
                self._configs[logical_id] = FunctionConfig.from_template(logical_id)
            return self._configs[logical_id]

    def environment(self, logical_id: str) -> dict[str, str]:
        """The whole environment a process of this function starts with."""
        config = self.config(logical_id)
        env = {k: v for k, v in os.environ.items() if k in _PASSED_THROUGH}
        # Lambda gives the execution role's credentials; moto accepts any
        env.update({name: os.environ.get(name, "testing") for name in _CREDENTIALS})
        env.update(
            {
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{logical_id}",
                "AWS_LAMBDA_LOG_STREAM_NAME": _stream_name(),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "LAMBDA_TASK_ROOT": str(config.code_dir),
                "TZ": ":UTC",
                # no configuration files of this machine's user: only the environment counts
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        )
        if config.environment is not None:
            env.update(
                {
                    "AWS_LAMBDA_FUNCTION_NAME": logical_id,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
                    "AWS_LAMBDA_FUNCTION_TIMEOUT": str(config.timeout),
                    "AWS_REGION": REGION,
                    "AWS_DEFAULT_REGION": REGION,
                    "_HANDLER": config.handler,
                    **config.environment,
                }
            )
            declared: Iterable[str] = config.environment
        else:
            env.update(self.aws.environment(logical_id))
            declared = _template().function(logical_id).get("Environment", {}).get("Variables", {})
        env.update({k: v for k, v in self.overrides.items() if k in declared})
        if "WEBSOCKET_ENDPOINT" in declared:
            env.update(self.local_variables)
        return env

    def update_overrides(self, overrides: dict[str, str]) -> None:
        """Change override values; idle processes are retired so that the next invocation of
        each function starts with the new environment (busy ones finish first)."""
        with self._lock:
            self.overrides.update(overrides)
        self._retire_idle()

    def update_local_variables(self, variables: dict[str, str]) -> None:
        """Variables the local stack adds for the functions that reach @connections (the local
        gateway's secret: stylelocal.gateway); idle processes are retired, as by update_overrides."""
        with self._lock:
            self.local_variables.update(variables)
        self._retire_idle()

    def _retire_idle(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            with pool.cond:
                retired, pool.idle = pool.idle, []
                pool.cond.notify_all()
            for worker in retired:
                worker.kill()
            # busy workers are retired when they come back (see _release)
            with pool.cond:
                for worker in pool.busy:
                    worker.retire = True

    def warm(self, logical_ids: Iterable[str] | None = None, count: int = 1) -> None:
        """Start `count` processes (at most max_concurrency) of each function now, in parallel,
        so that first invocations do not pay the cold start."""
        ids = list(logical_ids) if logical_ids is not None else self.functions()
        count = min(count, self.max_concurrency)
        errors: list[BaseException] = []

        def start(logical_id: str) -> None:
            try:
                pool = self._pool(logical_id)
                with pool.cond:
                    if pool.size() >= count:
                        return
                    pool.starting += 1
                try:
                    worker = self._spawn(logical_id)
                except BaseException:
                    pool.started(None)
                    raise
                pool.started(worker)
                if self._closed:  # closed as it came up: close() did not see it among the idle
                    with pool.cond:
                        if worker in pool.idle:
                            pool.idle.remove(worker)
                    worker.kill()
            except BaseException as error:  # reported below, in the caller's thread
                errors.append(error)

        threads = [threading.Thread(target=start, args=(i,), daemon=True) for i in ids for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run the function on `event` (anything JSON can carry) and return its result, or a
        FunctionError. Blocks until it is done; safe to call from many threads."""
        config = self.config(logical_id)
        payload = json.dumps(event, separators=(",", ":"))  # what Lambda would refuse fails here
        worker = self._acquire(logical_id)
        if isinstance(worker, FunctionError):  # the function's init failed
            return worker
        healthy = False
        request_id = _new_request_id()
        try:
            deadline = time.time() + config.timeout
            try:
                worker.send({"requestId": request_id, "deadline": deadline, "event": payload})
            except (BrokenPipeError, OSError, ValueError):
                self._check_open()
                return FunctionError(
                    errorMessage=f"RequestId: {request_id} Error: Runtime exited unexpectedly",
                    errorType="Runtime.ExitError",
                )
            try:
                answer = worker.answers.get(timeout=config.timeout)
            except queue.Empty:
                return FunctionError(
                    errorMessage=f"RequestId: {request_id} Error: Task timed out after {config.timeout:.2f} seconds",
                    errorType="Sandbox.Timedout",
                )
            if answer is None:  # the process ended mid-invocation (os._exit, a crash, close())
                self._check_open()
                code = worker.process.wait()
                return FunctionError(
                    errorMessage=f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}",
                    errorType="Runtime.ExitError",
                )
            healthy = True
            if "error" in answer:
                return FunctionError(answer["error"])
            return json.loads(answer["result"])
        finally:
            self._release(logical_id, worker, healthy)

    def invoke_for_state_machine(self, logical_id: str, event: Any) -> tuple[Any, bool]:
        """`invoke` as moto_fixes.set_lambda_invoker wants it: (payload, whether it failed)."""
        answer = self.invoke(logical_id, event)
        return answer, isinstance(answer, FunctionError)

    def close(self) -> None:
        """Stop every process (busy invocations end with RuntimeClosedError). Idempotent."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
            spawning = list(self._spawning)
        for worker in spawning:  # a warm-up still in its init (its _spawn then fails, and is reported)
            worker.kill()
        for pool in pools:
            with pool.cond:
                workers = [*pool.idle, *pool.busy]
                pool.idle = []
                pool.cond.notify_all()
            for worker in workers:
                worker.kill()
            for worker in workers:
                for thread in worker.threads:
                    thread.join(timeout=5)

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process_ids(self, logical_id: str) -> list[int]:
        """The process ids of the function's live processes (for tests and diagnostics)."""
        pool = self._pool(logical_id)
        with pool.cond:
            return [w.process.pid for w in [*pool.idle, *pool.busy]]

    # --- pools --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosedError("the Lambda runtime is closed")

    def _pool(self, logical_id: str) -> _Pool:
        with self._lock:
            self._check_open()
            if logical_id not in self._pools:
                self._pools[logical_id] = _Pool(self.max_concurrency)
            return self._pools[logical_id]

    def _acquire(self, logical_id: str) -> _Worker | FunctionError:
        pool = self._pool(logical_id)
        with pool.cond:
            while True:
                self._check_open()
                while pool.idle:
                    worker = pool.idle.pop()
                    if worker.process.poll() is None:
                        pool.busy.add(worker)
                        return worker
                    worker.kill()  # died while idle: start another
                if pool.size() < pool.limit:
                    pool.starting += 1
                    break
                pool.cond.wait()
        try:
            worker = self._spawn(logical_id)
        except _InitError as failed:
            pool.started(None)
            return FunctionError(failed.payload)
        except BaseException:
            pool.started(None)
            raise
        pool.started(worker, busy=True)
        if self._closed:  # closed while it started: close() did not see it
            worker.kill()
            raise RuntimeClosedError("the Lambda runtime is closed")
        return worker

    def _release(self, logical_id: str, worker: _Worker, healthy: bool) -> None:
        pool = self._pool_if_any(logical_id)
        keep = healthy and not self._closed and not worker.retire and worker.process.poll() is None
        if pool is not None:
            with pool.cond:
                pool.busy.discard(worker)
                if keep:
                    pool.idle.append(worker)
                pool.cond.notify_all()
        if not keep:
            worker.kill()

    def _pool_if_any(self, logical_id: str) -> _Pool | None:
        with self._lock:
            return self._pools.get(logical_id)

    # --- processes ----------------------------------------------------------------------------

    def _spawn(self, logical_id: str) -> _Worker:
        config = self.config(logical_id)
        spec = {
            "function": logical_id,
            "handler": config.handler,
            "path": [str(config.code_dir), *map(str, config.layer_dirs)],
            "memory": config.memory_mb,
            "timeout": config.timeout,
        }
        stderr: int | None = subprocess.PIPE if callable(self.logs) else None
        if self.logs == "discard":
            stderr = subprocess.DEVNULL
        process = subprocess.Popen(
            # -I: no PYTHONPATH, user site or current folder on sys.path; the code and layer
            # folders are put there by the worker, as Lambda's runtime does
            [sys.executable, "-I", "-m", "stylelocal.lambdas", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=self.environment(logical_id),
            cwd=config.code_dir,  # /var/task
            close_fds=True,
        )
        worker = _Worker(config, process)
        with self._lock:
            closed = self._closed
            if not closed:
                self._spawning.add(worker)
        if closed:  # closed meanwhile: close() could not have seen this process
            worker.kill()
            raise RuntimeClosedError("the Lambda runtime is closed")
        try:
            return self._init(logical_id, worker)
        except _InitError:
            if self._closed:  # stopped by close(), not a failing init
                raise RuntimeClosedError("the Lambda runtime is closed") from None
            raise
        finally:
            with self._lock:
                self._spawning.discard(worker)

    def _init(self, logical_id: str, worker: _Worker) -> _Worker:
        """The new process's init (Lambda's init phase): its answer threads, then its first word."""
        process = worker.process
        reader = threading.Thread(target=_read_answers, args=(worker,), name=f"{logical_id}-answers", daemon=True)
        reader.start()
        worker.threads.append(reader)
        if callable(self.logs) and process.stderr is not None:
            sink = self.logs
            forward = threading.Thread(
                target=_forward_logs, args=(logical_id, process.stderr, sink), name=f"{logical_id}-logs", daemon=True
            )
            forward.start()
            worker.threads.append(forward)
        try:
            ready = worker.answers.get(timeout=INIT_TIMEOUT_SECONDS)
        except queue.Empty:
            worker.kill()
            raise _InitError(
                {
                    "errorMessage": f"{logical_id} did not finish its init in {INIT_TIMEOUT_SECONDS:.0f} s",
                    "errorType": "Runtime.InitTimeout",
                }
            ) from None
        if ready is None or "initError" in ready:
            worker.kill()
            payload = (ready or {}).get("initError") or {
                "errorMessage": f"{logical_id}'s runtime exited during init (status {process.poll()})",
                "errorType": "Runtime.ExitError",
            }
            raise _InitError(payload)
        return worker


class _InitError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage"))
        self.payload = payload


def _read_answers(worker: _Worker) -> None:
    stream = worker.process.stdout
    assert stream is not None
    try:
        for line in stream:
            worker.answers.put(json.loads(line))
    except (ValueError, OSError):
        pass
    worker.answers.put(None)  # end of stream: the process is gone


def _forward_logs(logical_id: str, stream: IO[bytes], sink: Callable[[str, str], None]) -> None:
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            with contextlib.suppress(Exception):  # a sink's failure must not stop the function
                sink(logical_id, line.decode(errors="replace").rstrip("\n"))


# --- the worker's side ----------------------------------------------------------------------------


class LambdaContext:
    """The context object of Lambda's Python runtime."""

    def __init__(self, function_name: str, memory_mb: int, request_id: str, deadline: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)  # a string in Lambda's runtime too
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{function_name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _decimal(value: Any) -> Any:
    # Lambda's Python runtime serialises Decimal (DynamoDB's numbers) rather than failing
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
    }


def _worker_main(spec: dict[str, Any]) -> None:
    # A Ctrl-C in the terminal reaches the whole process group: the functions must outlive it,
    # so that the stack can still run $disconnect and finish batches while it stops; close()
    # (or the end of stdin, if the parent dies) is what ends a worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets private copies of stdin and stdout; the function's own output (print,
    # powertools' JSON logs) goes to stderr, like everything a function writes goes to its logs.
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    requests_in = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    def answer(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    sys.path[:0] = spec["path"]
    module_name, _, function_name = spec["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, function_name)
    except Exception as error:  # Lambda's names for the ways an init fails
        if isinstance(error, ImportError):
            kind, text = "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        elif isinstance(error, AttributeError):
            kind, text = "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        elif isinstance(error, SyntaxError):
            kind, text = "Runtime.UserCodeSyntaxError", str(error)
        else:
            kind, text = type(error).__name__, str(error)
        traceback.print_exc()
        stack = traceback.format_list(traceback.extract_tb(error.__traceback__))
        answer({"initError": {"errorMessage": text, "errorType": kind, "stackTrace": stack}})
        return
    answer({"ready": True})

    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    for line in requests_in:
        request = json.loads(line)
        request_id = request["requestId"]
        context = LambdaContext(spec["function"], spec["memory"], request_id, request["deadline"])
        print(f"START RequestId: {request_id} Version: {version}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            result = handler(json.loads(request["event"]), context)
            try:
                message: dict[str, Any] = {"result": json.dumps(result, default=_decimal)}
            except (TypeError, ValueError) as unserialisable:
                message = {
                    "error": {
                        "errorMessage": f"Unable to marshal response: {unserialisable}",
                        "errorType": "Runtime.MarshalError",
                        "requestId": request_id,
                        "stackTrace": [],
                    }
                }
        except Exception as error:
            print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
            traceback.print_exc()
            message = {"error": _error_payload(error, request_id)}
        duration = (time.perf_counter() - started) * 1000
        sys.stdout.flush()
        print(f"END RequestId: {request_id}", file=sys.stderr)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tMemory Size: {spec['memory']} MB",
            file=sys.stderr,
            flush=True,
        )
        answer(message)


if __name__ == "__main__":
    _worker_main(json.loads(sys.argv[1]))


__all__ = ["FunctionConfig", "FunctionError", "LambdaContext", "LambdaRuntime", "RuntimeClosedError"]
