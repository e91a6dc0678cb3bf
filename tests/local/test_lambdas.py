"""The local Lambda runtime: the template's functions in warm processes of their own, with their
own environment, Lambda's error payloads, timeouts and concurrency."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from stylelocal.lambdas import FunctionError, LambdaRuntime, RuntimeClosedError
from stylelocal.template import ROOT

from . import runtime_fixtures
from .runtime_fixtures import probe_function

logs, runtime = runtime_fixtures.logs, runtime_fixtures.runtime  # fixtures

CONNECTION = "L0SM9cOFvHcCIhw="


def environ_of(pid: int) -> dict[str, str]:
    """A live process's environment, as the kernel holds it (what it was started with)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return state != "Z"


def connect_event(connection_id: str = CONNECTION) -> dict:
    return {"requestContext": {"connectionId": connection_id, "routeKey": "$connect", "eventType": "CONNECT"}}


def notify_event() -> dict:
    """An SQS event of one malformed message: the notify function drops it and succeeds."""
    record = {
        "messageId": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "receiptHandle": "handle",
        "body": "not json",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795356883000"},
        "messageAttributes": {},
        "md5OfBody": "0f1e2d3c4b5a69788a9b0c1d2e3f4a5b",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ResultsQueue",
        "awsRegion": "us-east-1",
    }
    return {"Records": [record]}


def test_each_function_runs_with_its_own_template_environment(aws, monkeypatch):
    monkeypatch.setenv("STYLELOCAL_CALLERS_SECRET", "must not leak")
    endpoint = "http://127.0.0.1:9/local"
    with LambdaRuntime(aws, {"WEBSOCKET_ENDPOINT": endpoint, "NOT_DECLARED": "x"}, logs="discard") as lambdas:
        assert lambdas.invoke("ConnectFunction", connect_event()) == {"statusCode": 200}
        assert lambdas.invoke("NotifyFunction", notify_event()) == {"batchItemFailures": []}
        (connect,) = lambdas.process_ids("ConnectFunction")
        (notify,) = lambdas.process_ids("NotifyFunction")
        assert connect != notify
        connect_env, notify_env = environ_of(connect), environ_of(notify)

    assert connect_env["CONNECTIONS_TABLE"] == "ConnectionsTable"
    assert "JOBS_TABLE" not in connect_env  # Notify's variable: never in Connect's process
    assert "WEBSOCKET_ENDPOINT" not in connect_env  # an override applies only where declared
    assert notify_env["JOBS_TABLE"] == "JobsTable"
    assert notify_env["WEBSOCKET_ENDPOINT"] == endpoint  # the override replaced the template's
    assert notify_env["IDEMPOTENCY_TABLE"] == "IdempotencyTable"
    for env, name in ((connect_env, "ConnectFunction"), (notify_env, "NotifyFunction")):
        assert env["AWS_ENDPOINT_URL"] == aws.endpoint
        assert env["POWERTOOLS_SERVICE_NAME"] == "style-transfer"  # Globals
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
        assert env["_HANDLER"] == "app.handler"
        assert "STYLELOCAL_CALLERS_SECRET" not in env
        assert "NOT_DECLARED" not in env
    assert notify_env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "30"
    assert connect_env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "10"


def test_a_template_function_imports_its_handler_and_the_layer_as_lambda_does(aws, runtime, logs):
    # the real ConnectFunction records the connection in moto's table
    assert runtime.invoke("ConnectFunction", connect_event()) == {"statusCode": 200}
    item = aws.client("dynamodb").get_item(TableName="ConnectionsTable", Key={"connectionId": {"S": CONNECTION}})
    assert item["Item"]["connectionId"]["S"] == CONNECTION
    config = runtime.config("ConnectFunction")
    assert config.code_dir == ROOT / "functions" / "connect"
    assert config.layer_dirs == (ROOT / "layers" / "common",)
    assert config.timeout == 10
    assert config.memory_mb == 256
    assert any(line.startswith("REPORT RequestId: ") for line in logs.of("ConnectFunction"))


def test_the_handler_sees_lambdas_context_path_and_folder(aws, tmp_path):
    probe = probe_function(tmp_path, "ProbeFunction", "environment", timeout=7, environment={"ONLY_MINE": "1"})
    with LambdaRuntime(aws, {"ONLY_MINE": "2"}, functions=[probe], logs="discard") as lambdas:
        seen = lambdas.invoke("ProbeFunction", {})
    assert seen["path"][0] == str(probe.code_dir)  # /var/task first
    assert seen["cwd"] == str(probe.code_dir)
    assert seen["environ"]["ONLY_MINE"] == "2"  # declared, so overridden
    assert seen["environ"]["LAMBDA_TASK_ROOT"] == str(probe.code_dir)
    assert seen["environ"]["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert seen["name"] == "ProbeFunction"
    assert seen["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:ProbeFunction"
    assert seen["memory"] == "128"
    assert 6000 < seen["remaining"] <= 7000
    assert len(seen["requestId"]) == 36


def test_module_state_persists_between_invocations(aws, tmp_path, logs):
    counter = probe_function(tmp_path, "CountFunction", "count")
    with LambdaRuntime(aws, functions=[counter], logs=logs) as lambdas:
        answers = [lambdas.invoke("CountFunction", {}) for _ in range(3)]
        assert [a["count"] for a in answers] == [1, 2, 3]
        assert len({a["pid"] for a in answers}) == 1
        # the template's functions too: powertools' cold start flag is module state
        for body in ("not json", "still not json"):
            lambdas.invoke("DefaultFunction", {"requestContext": {"connectionId": CONNECTION}, "body": body})
    records = [json.loads(line) for line in logs.of("DefaultFunction") if line.startswith("{")]
    assert [record["cold_start"] for record in records] == [True, False]


def test_an_exception_is_reported_as_lambda_does_and_the_process_keeps_serving(runtime):
    failed = runtime.invoke("ConnectFunction", {"requestContext": {}})  # no connectionId: KeyError
    assert isinstance(failed, FunctionError)
    assert failed.error_type == "KeyError"
    assert failed["errorMessage"] == "'connectionId'"
    assert any("styleservice/routes.py" in frame for frame in failed["stackTrace"])
    assert set(failed) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    (pid,) = runtime.process_ids("ConnectFunction")
    assert runtime.invoke("ConnectFunction", connect_event()) == {"statusCode": 200}
    assert runtime.process_ids("ConnectFunction") == [pid]


def test_a_probe_exception_keeps_its_message(aws, tmp_path):
    failing = probe_function(tmp_path, "FailFunction", "fail")
    with LambdaRuntime(aws, functions=[failing], logs="discard") as lambdas:
        failed = lambdas.invoke("FailFunction", {"why": "testing"})
    assert failed == FunctionError(failed)
    assert failed.error_type == "ValueError"
    assert failed.message == "no good: testing"
    assert 'in fail\n    raise ValueError("no good: " + str(event.get("why")))\n' in failed["stackTrace"][-1]


def test_an_invocation_over_the_timeout_is_stopped_and_reported(aws, tmp_path):
    slow = probe_function(tmp_path, "SlowFunction", "sleep", timeout=1)
    with LambdaRuntime(aws, functions=[slow], logs="discard") as lambdas:
        (first,) = [lambdas.invoke("SlowFunction", {"seconds": 0})["pid"]]
        started = time.monotonic()
        failed = lambdas.invoke("SlowFunction", {"seconds": 30})
        elapsed = time.monotonic() - started
        assert isinstance(failed, FunctionError)
        assert failed.error_type == "Sandbox.Timedout"
        assert failed.message.endswith("Task timed out after 1.00 seconds")
        assert 1.0 <= elapsed < 3
        assert not alive(first)  # the sandbox is discarded, as Lambda does
        again = lambdas.invoke("SlowFunction", {"seconds": 0})
        assert again["slept"] == 0
        assert again["pid"] != first


def test_concurrent_invocations_run_in_parallel_up_to_the_pool_size(aws, tmp_path):
    slow = probe_function(tmp_path, "SlowFunction", "sleep")
    with LambdaRuntime(aws, functions=[slow], logs="discard", max_concurrency=4) as lambdas:
        lambdas.warm(["SlowFunction"], count=4)
        assert len(lambdas.process_ids("SlowFunction")) == 4
        with ThreadPoolExecutor(8) as pool:
            started = time.monotonic()
            four = list(pool.map(lambda i: lambdas.invoke("SlowFunction", {"seconds": 0.5, "echo": i}), range(4)))
            parallel = time.monotonic() - started
            started = time.monotonic()
            eight = list(pool.map(lambda i: lambdas.invoke("SlowFunction", {"seconds": 0.5, "echo": i}), range(8)))
            queued = time.monotonic() - started
        assert [a["echo"] for a in four] == [0, 1, 2, 3]
        assert len({a["pid"] for a in four}) == 4
        assert parallel < 1.5  # not 4 x 0.5 s
        assert [a["echo"] for a in eight] == list(range(8))
        assert len({a["pid"] for a in eight}) == 4  # never more than the pool
        assert 1.0 <= queued < 2.5  # two rounds


def test_many_threads_share_a_runtime_safely(runtime):
    def one(i: int) -> bool:
        if i % 2:
            answer = runtime.invoke("DefaultFunction", {"requestContext": {}, "body": json.dumps({"action": f"X{i}"})})
            return json.loads(answer["body"])["data"]["action"] == f"X{i}"
        return runtime.invoke("ConnectFunction", connect_event(f"conn{i}=")) == {"statusCode": 200}

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(40)))
    assert len(runtime.process_ids("DefaultFunction")) <= 4
    assert len(runtime.process_ids("ConnectFunction")) <= 4


def test_what_a_function_prints_goes_to_its_logs_not_into_the_answer(aws, tmp_path, logs):
    noisy = probe_function(tmp_path, "NoisyFunction", "noisy")
    with LambdaRuntime(aws, functions=[noisy], logs=logs) as lambdas:
        assert lambdas.invoke("NoisyFunction", {}) == {"ok": True}
        assert lambdas.invoke("NoisyFunction", {}) == {"ok": True}
    lines = logs.of("NoisyFunction")
    assert "printed to stdout" in lines
    assert "printed to stderr" in lines


def test_results_are_marshalled_as_lambda_does(aws, tmp_path):
    functions = [
        probe_function(tmp_path, "SetFunction", "unserialisable"),
        probe_function(tmp_path, "DecimalFunction", "decimals"),
        probe_function(tmp_path, "AnswerFunction", "answer"),
    ]
    with LambdaRuntime(aws, functions=functions, logs="discard") as lambdas:
        failed = lambdas.invoke("SetFunction", {})
        assert isinstance(failed, FunctionError)
        assert failed.error_type == "Runtime.MarshalError"
        assert lambdas.invoke("DecimalFunction", {}) == {"whole": 3, "half": 1.5}
        assert lambdas.invoke("AnswerFunction", {"answer": None}) is None
        assert lambdas.invoke("AnswerFunction", {"answer": "text"}) == "text"
        with pytest.raises(TypeError):  # an event JSON cannot carry never reaches the function
            lambdas.invoke("AnswerFunction", {"answer": object()})


def test_a_function_that_cannot_be_imported_or_that_exits(aws, tmp_path):
    broken = probe_function(tmp_path, "BrokenFunction", "handler", code="import not_a_module_anywhere\n")
    exits = probe_function(tmp_path, "ExitFunction", "exits")
    with LambdaRuntime(aws, functions=[broken, exits], logs="discard") as lambdas:
        failed = lambdas.invoke("BrokenFunction", {})
        assert isinstance(failed, FunctionError)
        assert failed.error_type == "Runtime.ImportModuleError"
        assert "not_a_module_anywhere" in failed.message
        died = lambdas.invoke("ExitFunction", {})
        assert isinstance(died, FunctionError)
        assert died.error_type == "Runtime.ExitError"
        assert "exit status 3" in died.message


def test_an_unknown_function_is_refused(runtime):
    with pytest.raises(KeyError, match="NoSuchFunction"):
        runtime.invoke("NoSuchFunction", {})


def test_close_stops_every_process(aws, tmp_path):
    slow = probe_function(tmp_path, "SlowFunction", "sleep", timeout=20)
    lambdas = LambdaRuntime(aws, functions=[slow], logs="discard")
    lambdas.invoke("ConnectFunction", connect_event())
    lambdas.warm(["SlowFunction"], count=2)
    outcome: list[object] = []
    busy = threading.Thread(target=lambda: outcome.append(_invoke_or_error(lambdas, "SlowFunction", 10)))
    busy.start()
    time.sleep(0.3)
    pids = lambdas.process_ids("ConnectFunction") + lambdas.process_ids("SlowFunction")
    assert len(pids) == 3
    started = time.monotonic()
    lambdas.close()
    busy.join(5)
    assert time.monotonic() - started < 5
    assert not any(alive(pid) for pid in pids)
    assert isinstance(outcome[0], RuntimeClosedError)  # the busy invocation was cut short
    with pytest.raises(RuntimeClosedError):
        lambdas.invoke("ConnectFunction", connect_event())


def test_close_stops_a_process_still_in_its_init(aws, tmp_path):
    """A warm-up in progress when the stack stops (Ctrl-C right after `make up`): its process,
    still in its init, goes with the others, and the warm-up says the runtime closed."""
    slow_init = probe_function(
        tmp_path, "SlowInitFunction", "count", code="import time\ntime.sleep(30)\n" + PROBE_COUNT
    )
    lambdas = LambdaRuntime(aws, functions=[slow_init], logs="discard")
    failures: list[BaseException] = []

    def warm() -> None:
        try:
            lambdas.warm(["SlowInitFunction"])
        except BaseException as failure:
            failures.append(failure)

    warming = threading.Thread(target=warm)
    warming.start()
    deadline = time.monotonic() + 10
    while not (pids := children_running("SlowInitFunction")):
        assert time.monotonic() < deadline, "the warm-up did not start its process"
        time.sleep(0.05)
    lambdas.close()
    warming.join(10)
    assert not any(alive(pid) for pid in pids)
    assert [type(failure) for failure in failures] == [RuntimeClosedError]


PROBE_COUNT = "def count(event, context):\n    return {}\n"


def children_running(function: str) -> list[int]:
    """This process's children running `function` (a runtime's processes, by their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == os.getpid() and f'"function": "{function}"' in command:
                found.append(int(entry.name))
    return found


def _invoke_or_error(lambdas: LambdaRuntime, function: str, seconds: float) -> object:
    try:
        return lambdas.invoke(function, {"seconds": seconds})
    except RuntimeClosedError as closed:
        return closed


def test_new_overrides_reach_the_next_invocation(aws):
    with LambdaRuntime(aws, {"WEBSOCKET_ENDPOINT": "http://127.0.0.1:9/one"}, logs="discard") as lambdas:
        lambdas.invoke("NotifyFunction", notify_event())
        (before,) = lambdas.process_ids("NotifyFunction")
        lambdas.update_overrides({"WEBSOCKET_ENDPOINT": "http://127.0.0.1:9/two"})
        lambdas.invoke("NotifyFunction", notify_event())
        (after,) = lambdas.process_ids("NotifyFunction")
        assert before != after
        assert environ_of(after)["WEBSOCKET_ENDPOINT"] == "http://127.0.0.1:9/two"


def test_a_ctrl_c_for_the_terminal_does_not_stop_the_functions(runtime):
    # the terminal sends SIGINT to every process of the group: the stack stops them itself
    runtime.invoke("ConnectFunction", connect_event())
    (pid,) = runtime.process_ids("ConnectFunction")
    os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    assert alive(pid)
    assert runtime.invoke("ConnectFunction", connect_event()) == {"statusCode": 200}
    assert runtime.process_ids("ConnectFunction") == [pid]
