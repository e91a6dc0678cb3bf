"""EventBridge on this machine: the template's function events of type Schedule and
EventBridgeRule, as `sam deploy` would create them.

    events = LocalEvents(runtime, aws)        # reads every function's Schedule and EventBridgeRule events
    batch = LocalBatch(aws, on_job_end=events.publish)
    events.start()                            # the schedules: each fires now, then at its rate
    ...
    events.stop()

- A `Schedule` event (`rate(N minute|minutes|hour|hours|day|days)`) invokes its function with a
  Scheduled Event of EventBridge's shape, once when started (a deployed rule's first run comes
  within a period of the deploy; here at once, so that a fresh stack is in its steady state,
  MinWarmWorkers up, from the start) and then once per period.
- An `EventBridgeRule` event's `Pattern` (values resolved against the local AWS) is matched
  against every event `publish`ed here, as EventBridge matches: each field of the pattern names a
  list of allowed values, or a nested pattern for an object. A match invokes the function with the
  event, asynchronously, as EventBridge does.

The local Batch runner publishes its jobs' state changes (`Batch Job State Change`) here, and
`ExecutionWatcher` the ends of the template's state machines' executions (`Step Functions
Execution Status Change`), which moto's Step Functions does not send anywhere.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """The period of a `rate(...)` schedule expression (cron expressions are not run locally)."""
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(f"only rate(N unit) schedules run locally, not {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching of exact values: every field of the pattern must be in the event,
    with a value among the pattern's list (or matching its nested pattern)."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            key in event and matches(value, event[key]) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        values = event if isinstance(event, list) else [event]
        return any(value in pattern for value in values)
    return pattern == event


@dataclass(frozen=True)
class Rule:
    function: str
    name: str
    pattern: dict[str, Any]


@dataclass(frozen=True)
class Schedule:
    function: str
    name: str
    seconds: float


def _template() -> Any:
    from . import template

    return template


def function_events(aws: Any) -> tuple[list[Schedule], list[Rule]]:
    """The template's Schedule and EventBridgeRule events of every function, resolved."""
    template = _template()
    schedules, rules = [], []
    for logical_id in template.resources("AWS::Serverless::Function"):
        for name, event in (template.function(logical_id).get("Events") or {}).items():
            props = aws.resolve(event.get("Properties") or {})
            if props.get("Enabled", props.get("State", "ENABLED")) in (False, "DISABLED"):
                continue
            if event["Type"] == "Schedule":
                schedules.append(Schedule(logical_id, name, rate_seconds(props["Schedule"])))
            elif event["Type"] == "EventBridgeRule":
                rules.append(Rule(logical_id, name, props["Pattern"]))
    return schedules, rules


class LocalEvents:
    """Schedules and rules of the template's functions, invoking them through `runtime`."""

    def __init__(self, runtime: Any, aws: Any) -> None:
        self.runtime = runtime
        self.region = aws.region
        self.schedules, self.rules = function_events(aws)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> LocalEvents:
        for schedule in self.schedules:
            thread = threading.Thread(
                target=self._every, args=(schedule,), name=f"schedule-{schedule.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []

    def publish(self, event: dict[str, Any]) -> None:
        """An event, as PutEvents gives it: every matching rule's function is invoked with it."""
        if self._stop.is_set():
            return
        event = {"version": "0", "id": str(uuid.uuid4()), "account": "123456789012", "region": self.region,
                 "time": _now(), "resources": [], **event}  # fmt: skip
        for rule in self.rules:
            if matches(rule.pattern, event):
                threading.Thread(target=self._invoke, args=(rule.function, rule.name, event), daemon=True).start()

    def _every(self, schedule: Schedule) -> None:
        while not self._stop.is_set():
            self._invoke(schedule.function, schedule.name, self._scheduled_event(schedule))
            self._stop.wait(schedule.seconds)

    def _scheduled_event(self, schedule: Schedule) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": _now(),
            "region": self.region,
            "resources": [f"arn:aws:events:{self.region}:123456789012:rule/local-{schedule.function}-{schedule.name}"],
            "detail": {},
        }

    def _invoke(self, function: str, event_name: str, event: dict[str, Any]) -> None:
        try:
            self.runtime.invoke(function, event)
        except Exception:  # one failed invocation is the function's affair, as in EventBridge
            log.warning("%s's %s event: the invocation failed", function, event_name, exc_info=True)


class ExecutionWatcher:
    """Publishes `Step Functions Execution Status Change` for every execution of the template's
    state machines that ends (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) once started, as Step
    Functions sends it to EventBridge; it looks every `interval` seconds."""

    ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

    def __init__(self, aws: Any, events: LocalEvents, interval: float = 0.5) -> None:
        self.sfn = aws.client("stepfunctions")
        self.machines = [aws.refs[name] for name in _template().resources("AWS::Serverless::StateMachine")]
        self.events = events
        self.interval = interval
        self._seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="execution-watcher", daemon=True)

    def start(self) -> ExecutionWatcher:
        self._look(publish=False)  # what already ended before (a restored stack) is not news
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._look(publish=True)
            except Exception:  # moto busy or stopping: the next look catches up
                log.debug("could not list executions", exc_info=True)

    def _look(self, publish: bool) -> None:
        for machine in self.machines:
            for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
                for execution in page["executions"]:
                    arn, status = execution["executionArn"], execution["status"]
                    if self._seen.get(arn) == status:
                        continue
                    self._seen[arn] = status
                    if publish and status in self.ENDED:
                        self.events.publish(_status_change(execution, machine))


def _status_change(execution: dict[str, Any], machine: str) -> dict[str, Any]:
    def ms(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if value is not None else None

    return {
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "resources": [execution["executionArn"]],
        "detail": {
            "executionArn": execution["executionArn"],
            "stateMachineArn": machine,
            "name": execution["name"],
            "status": execution["status"],
            "startDate": ms(execution.get("startDate")),
            "stopDate": ms(execution.get("stopDate")),
            "input": None,  # as the template's state machine logs: IncludeExecutionData false
            "output": None,
        },
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
