"""$connect and $disconnect against moto, from their event files."""

from __future__ import annotations

import time

from .local_aws import LocalAws
from .routes_support import CONNECTION_ID


def connection(aws: LocalAws) -> dict | None:
    table = aws.refs["ConnectionsTable"]
    return aws.client("dynamodb").get_item(TableName=table, Key={"connectionId": {"S": CONNECTION_ID}}).get("Item")


def test_connect_remembers_the_connection_until_a_ttl_past_api_gateways_two_hours(aws: LocalAws):
    before = int(time.time())
    assert aws.invoke("ConnectFunction", "connect/connect.json") == {"statusCode": 200}
    item = connection(aws)
    assert item is not None
    connected = int(item["connectedAt"]["N"])
    assert before <= connected <= int(time.time())
    assert int(item["expiresAt"]["N"]) - connected == 3 * 3600  # TTL in epoch seconds, not ms


def test_disconnect_forgets_the_connection(aws: LocalAws):
    aws.invoke("ConnectFunction", "connect/connect.json")
    assert aws.invoke("DisconnectFunction", "disconnect/disconnect.json") == {"statusCode": 200}
    assert connection(aws) is None


def test_disconnect_of_an_unknown_connection_is_fine(aws: LocalAws):
    # $disconnect is best effort and rows expire by TTL: the id may already be gone
    assert aws.invoke("DisconnectFunction", "disconnect/disconnect.json") == {"statusCode": 200}
    assert aws.client("dynamodb").scan(TableName=aws.refs["ConnectionsTable"])["Items"] == []
