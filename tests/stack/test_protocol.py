"""protocol.parse and the $default refusal on what JSON itself cannot read safely, and on field
names that are not the protocol's (issue 12): each a ProtocolError, never another exception."""

from __future__ import annotations

import json

import pytest
from styleservice.protocol import GetJob, ListStyles, ProtocolError, TransferStyle, parse, printable

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
