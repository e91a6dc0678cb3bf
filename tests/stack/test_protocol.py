"""protocol.parse and the $default refusal on what JSON itself cannot read safely, and on field
names that are not the protocol's (issue 12): each a ProtocolError, never another exception."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from styleservice.protocol import (
    MAX_NESTING,
    GetJob,
    ListStyles,
    ProtocolError,
    TransferStyle,
    nesting_exceeds,
    parse,
    printable,
)

PNG_URL = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("[" * 1100 + "]" * 1100, "the message is nested too deeply"),
        ('{"action": "LIST_STYLES", "x": ' + "[" * 100_000 + "}", "the message is nested too deeply"),
        ('{"action": "LIST_STYLES", "x": ' + "1" * 4301 + "}", "the message holds a number with too many digits"),
        ('{"action": "LIST_STYLES", "x": -' + "9" * 5000 + "}", "the message holds a number with too many digits"),
        ('{"action": "LIST_STYLES"', "the message is not valid JSON"),
    ],
)
def test_what_json_cannot_read_is_a_protocol_error(body: str, text: str):
    with pytest.raises(ProtocolError) as refused:
        parse(body, ListStyles)
    assert str(refused.value) == text


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


# strings full of what the scan must not count: brackets, quotes and backslashes, escaped by json.dumps
TRICKY_TEXT = st.text(alphabet='[]{}"\\ab', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.integers(min_value=0, max_value=8))
def test_the_nesting_scan_counts_what_json_nests(value: Any, limit: int):
    text = json.dumps(value)
    assert nesting_exceeds(text, limit) == (depth_of(value) > limit)


def test_the_nesting_limit_is_the_protocols_own_not_the_interpreters():
    """The same answer whatever the recursion limit is (Hypothesis, for one, raises it while it
    runs): deeper than MAX_NESTING is refused, MAX_NESTING itself parses."""
    deep = '{"action": "LIST_STYLES", "x": ' + nested(MAX_NESTING) + "}"  # the object is one level more
    shallow = '{"action": "LIST_STYLES", "x": ' + nested(MAX_NESTING - 1) + "}"
    before = sys.getrecursionlimit()
    try:
        for recursion_limit in (200, before, 3000, 100_000):
            sys.setrecursionlimit(recursion_limit)
            with pytest.raises(ProtocolError, match="nested too deeply"):
                parse(deep, ListStyles)
            with pytest.raises(ProtocolError, match="unknown field x"):  # read, then refused for its field
                parse(shallow, ListStyles)
    finally:
        sys.setrecursionlimit(before)


def test_brackets_inside_strings_are_not_nesting():
    body = json.dumps({"action": "LIST_STYLES", "x": "[" * 5000 + '\\"{' * 100})
    with pytest.raises(ProtocolError, match="unknown field x"):
        parse(body, ListStyles)


def test_python_field_names_are_unknown_fields():
    body = {"action": "TRANSFER_STYLE", "image": PNG_URL, "style": "swirls", "is_private": False}
    with pytest.raises(ProtocolError, match="isPrivate is required"):
        parse(json.dumps(body), TransferStyle)
    with pytest.raises(ProtocolError, match="unknown field is_private"):
        parse(json.dumps({**body, "isPrivate": False}), TransferStyle)
    proper = {k: v for k, v in body.items() if k != "is_private"} | {"isPrivate": False}
    with pytest.raises(ProtocolError, match=r"unknown field options\.preserve_colors"):
        parse(json.dumps({**proper, "options": {"preserve_colors": True}}), TransferStyle)
    with pytest.raises(ProtocolError, match="jobId is required"):
        parse(json.dumps({"action": "GET_JOB", "job_id": "0" * 32, "jobToken": "x"}), GetJob)


def test_echoed_names_are_bounded_and_surrogate_safe():
    long_name = "n" * 5000
    with pytest.raises(ProtocolError) as refused:
        parse(json.dumps({"action": "LIST_STYLES", long_name: 1}), ListStyles)
    assert len(str(refused.value)) < 120
    shown = printable("\ud800abc")
    assert shown == "\\ud800abc"
    shown.encode("utf-8")  # what a log line needs
