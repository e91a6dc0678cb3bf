"""$default: messages that select no route, from each event file under events/default/."""

from __future__ import annotations

import pytest

from .local_aws import LocalAws
from .routes_support import answer, assert_nothing_started, event_files, refusal, with_body

ACTIONS = (
    "TRANSFER_STYLE, REQUEST_UPLOAD, LIST_STYLES, LIST_IMAGES, GET_JOB, "
    "GET_SERVICE, PREVIEW_STYLES, DELETE_JOB, GET_IMAGE"
)
# event file -> (the action echoed back, the ERROR message)
REFUSED = {
    "unknown_action": ("PAINT_IT_BLACK", f"unknown action 'PAINT_IT_BLACK': send one of {ACTIONS}"),
    "lowercase_action": ("transfer_style", f"unknown action 'transfer_style': send one of {ACTIONS}"),
    "missing_action": (None, f"the message has no 'action': send one of {ACTIONS}"),
    "action_not_a_string": (None, f"action must be a string, one of {ACTIONS}"),
    "bad_json": (None, "the message is not valid JSON"),
    "not_an_object": (None, f"the message must be a JSON object with an 'action', one of {ACTIONS}"),
    "empty_body": (None, f"empty message: send a JSON object with an 'action', one of {ACTIONS}"),
}


def test_every_event_file_has_an_expectation():
    assert {path.split("/")[1].removesuffix(".json") for path in event_files("default")} == set(REFUSED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_naming_the_valid_actions(aws: LocalAws, name: str):
    response = aws.invoke("DefaultFunction", f"default/{name}.json")
    action, text = REFUSED[name]
    assert refusal(response) == text
    assert answer(response)[1]["action"] == action
    assert_nothing_started(aws)


def test_a_long_unknown_action_is_not_echoed_whole(aws: LocalAws):
    response = aws.invoke("DefaultFunction", with_body("default/unknown_action.json", action="X" * 5000))
    assert len(answer(response)[1]["action"]) < 50
    assert len(refusal(response)) < 200


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("[" * 1100 + "]" * 1100, "the message is nested too deeply"),
        ('{"action": "LIST_STYLES", "x": ' + "1" * 5000 + "}", "the message holds a number with too many digits"),
    ],
)
def test_what_json_cannot_read_is_refused_not_a_crash(aws: LocalAws, body: str, text: str):
    assert refusal(aws.invoke("DefaultFunction", {**with_body("default/unknown_action.json"), "body": body})) == text


def test_a_lone_surrogate_in_action_is_answered_escaped(aws: LocalAws):
    # its log line is checked in tests/local/test_hostile.py, where the function's output is read
    body = '{"action": "\\ud800X"}'
    response = aws.invoke("DefaultFunction", {**with_body("default/unknown_action.json"), "body": body})
    assert answer(response)[1]["action"] == "\\ud800X"
