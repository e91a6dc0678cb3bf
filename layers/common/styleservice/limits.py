"""What keeps a public demo's GPU bill bounded: how many jobs one connection and one source address
may start in a window of time, and how many jobs may wait or run at once (template parameters
JobsPerConnection, JobsPerSourceIp, their windows, and MaxActiveJobs; 0 turns a rate limit off).

A refusal is a ProtocolError, so TRANSFER_STYLE answers it with an ERROR saying when to try again
and starts nothing.

Rates are counted in fixed windows, one DynamoDB item per (who, window), incremented atomically
under a condition and deleted by TTL once the window is over.

Jobs in flight are admitted atomically (Admissions): one count of them and one ticket per job in
the same table, changed together in one transaction, the count only while it is under
MaxActiveJobs, so that jobs arriving together can never pass the cap between them (counting the
running executions and then starting one could). A job's ticket is given back when its execution
ends, whatever way it ends (functions/job_ended, on Step Functions' status-change event), or at
once when it never started; the ticket makes giving back idempotent, so a repeated event cannot
count a job out twice.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .protocol import ProtocolError
from .settings import settings

log = logging.getLogger(__name__)
BUSY = "the service is busy: {count} jobs are waiting or running, the most it takes at once; please try again in a few minutes"  # noqa: E501


@dataclass(frozen=True)
class RateLimit:
    who: str  # in the ERROR's words: "this connection", "your network address"
    jobs: int  # at most this many per window; 0: no limit
    window_seconds: int
    what: str = "style transfers"  # what is counted, in the ERROR's words ("previews")


# An IPv6 client is counted twice: by its /64, one LAN, in which it can pick any address, at the
# address's limit; and by its /48, at this many times that limit. ISPs hand a subscriber a /64, a
# /56 or a /48 (RIPE-690 recommends /56 or /48), so counting /64s alone gave a /56 holder 256
# allowances and a /48 holder 65,536; a /56 or a /48 alone would make the mobile subscribers of one
# operator, each with a /64 of a shared pool, share one allowance. With both, anyone gets at most
# this many allowances, a household with several devices is not squeezed, and clients of a pool
# share a larger one.
IPV6_SITE_PREFIX = 48
IPV6_SITE_FACTOR = 4


def _address(source_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address; an IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a dual-stack socket reports an
    IPv4 client) as the IPv4 address it is. None for text that is no address."""
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_key(source_ip: str) -> str:
    """The counted unit of a source address: an IPv4 address (also when written IPv4-mapped), or
    an IPv6 /64 (one LAN: a client can pick any address in it)."""
    address = _address(source_ip)
    if address is None:
        return source_ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def address_limits(source_ip: str, limit: RateLimit | None = None, prefix: str = "") -> list[tuple[RateLimit, str]]:
    """(limit, counted subject) for each counter a job from this address takes: the address (an
    IPv4 address or an IPv6 /64), and for IPv6 also its /48 at IPV6_SITE_FACTOR times the limit.
    `limit` and `prefix` (of the subjects): another count than TRANSFER_STYLE's (previews)."""
    limit = limit or address_limit()
    found = [(limit, f"{prefix}address#{address_key(source_ip)}")]
    address = _address(source_ip)
    if address is not None and address.version == 6:
        site = ipaddress.ip_network(f"{address}/{IPV6_SITE_PREFIX}", strict=False)
        wider = RateLimit("your network", limit.jobs * IPV6_SITE_FACTOR, limit.window_seconds, limit.what)
        found.append((wider, f"{prefix}network#{site}"))
    return found


def wait_words(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"


class RateLimits:
    """Fixed-window counters in the rate limits table (id, count, expiresAt as TTL)."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table = boto3.resource("dynamodb").Table(table_name or settings.rate_limits_table)

    def take(self, limit: RateLimit, subject: str, now: float | None = None) -> None:
        """Counts one job for `subject` (a connection id, an address key), or raises ProtocolError
        saying when its window ends if it already has `limit.jobs` in this window."""
        if limit.jobs <= 0:
            return
        now = time.time() if now is None else now
        start = int(now // limit.window_seconds) * limit.window_seconds
        end = start + limit.window_seconds
        try:
            self.table.update_item(
                Key={"id": f"{subject}#{start}"},
                UpdateExpression="ADD #n :one SET expiresAt = :expires",
                ConditionExpression="attribute_not_exists(#n) OR #n < :most",
                ExpressionAttributeNames={"#n": "count"},
                ExpressionAttributeValues={":one": 1, ":most": limit.jobs, ":expires": end + 60},
            )
        except ClientError as failure:
            if failure.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise ProtocolError(
                f"too many {limit.what} from {limit.who}: at most {limit.jobs} every "
                f"{wait_words(limit.window_seconds)}; please try again in {wait_words(end - now)}"
            ) from None

    def take_all(self, counts: list[tuple[RateLimit, str]], now: float | None = None) -> None:
        """Counts one job against each (limit, subject), in order, or none: when one refuses (or
        cannot be counted), what the others took is given back before the error goes on, so that
        a refused job spends no allowance."""
        now = time.time() if now is None else now
        taken: list[tuple[RateLimit, str]] = []
        try:
            for limit, subject in counts:
                self.take(limit, subject, now)
                taken.append((limit, subject))
        except (ProtocolError, ClientError, BotoCoreError):
            for limit, subject in reversed(taken):
                try:
                    self.give_back(limit, subject, now)
                except (ClientError, BotoCoreError):  # the refusal stands; the window ends soon enough
                    log.exception("a count could not be given back: %s", subject)
            raise

    def give_back(self, limit: RateLimit, subject: str, now: float) -> None:
        """Takes back one job counted by `take(limit, subject, now)` (the same `now`: the same
        window), for a job that was refused after all: a refusal must spend no allowance."""
        if limit.jobs <= 0:
            return
        start = int(now // limit.window_seconds) * limit.window_seconds
        try:
            self.table.update_item(
                Key={"id": f"{subject}#{start}"},
                UpdateExpression="ADD #n :minus_one",
                ConditionExpression="#n > :zero",  # never below zero, nor an item where there was none
                ExpressionAttributeNames={"#n": "count"},
                ExpressionAttributeValues={":minus_one": -1, ":zero": 0},
            )
        except ClientError as failure:
            if failure.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise


def connection_limit() -> RateLimit:
    return RateLimit("this connection", settings.jobs_per_connection, settings.connection_window_seconds)


def address_limit() -> RateLimit:
    return RateLimit("your network address", settings.jobs_per_source_ip, settings.source_ip_window_seconds)


# PREVIEW_STYLES is counted apart from TRANSFER_STYLE, in the same table and windows, at limits of
# its own: a preview costs a fraction of a second of a Lambda, not a GPU, but is still work.
PREVIEWS = "previews#"


def preview_limits(connection: str, source_ip: str) -> list[tuple[RateLimit, str]]:
    """The counters one PREVIEW_STYLES takes: its connection's, and its address's (IPv6: and /48's)."""
    per_connection = RateLimit(
        "this connection", settings.previews_per_connection, settings.connection_window_seconds, "previews"
    )
    per_address = RateLimit(
        "your network address", settings.previews_per_source_ip, settings.source_ip_window_seconds, "previews"
    )
    return [
        (per_connection, f"{PREVIEWS}connection#{connection}"),
        *address_limits(source_ip, per_address, PREVIEWS),
    ]


ACTIVE = "active"  # the count of jobs in flight; each job's ticket is "active#<jobId>"
TICKET_DAYS = 2  # a ticket no end ever gave back (none should) goes by TTL


class Admissions:
    """Jobs in flight, in the rate limits table: `active` {count} and `active#<jobId>` tickets."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = table_name or settings.rate_limits_table
        self.dynamodb = boto3.client("dynamodb")

    def admit(self, job_id: str, most: int) -> None:
        """Takes a place for the job among at most `most` in flight, or raises ProtocolError (busy)."""
        ticket = {"id": {"S": f"{ACTIVE}#{job_id}"}, "expiresAt": {"N": str(int(time.time()) + TICKET_DAYS * 86400)}}
        try:
            self.dynamodb.transact_write_items(
                TransactItems=[
                    {"Update": {
                        "TableName": self.table_name, "Key": {"id": {"S": ACTIVE}},
                        "UpdateExpression": "ADD #n :one",
                        "ConditionExpression": "attribute_not_exists(#n) OR #n < :most",
                        "ExpressionAttributeNames": {"#n": "count"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":most": {"N": str(most)}},
                    }},
                    {"Put": {"TableName": self.table_name, "Item": ticket,
                             "ConditionExpression": "attribute_not_exists(id)"}},
                ]
            )  # fmt: skip
        except self.dynamodb.exceptions.TransactionCanceledException as cancelled:
            reasons = [r.get("Code") for r in cancelled.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise ProtocolError(BUSY.format(count=self.in_flight())) from None
            raise

    def release(self, job_id: str) -> bool:
        """Gives the job's place back; False if it had none (given back already, or never taken)."""
        try:
            self.dynamodb.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self.table_name, "Key": {"id": {"S": f"{ACTIVE}#{job_id}"}},
                                "ConditionExpression": "attribute_exists(id)"}},
                    {"Update": {
                        "TableName": self.table_name, "Key": {"id": {"S": ACTIVE}},
                        "UpdateExpression": "ADD #n :less", "ExpressionAttributeNames": {"#n": "count"},
                        "ExpressionAttributeValues": {":less": {"N": "-1"}},
                    }},
                ]
            )  # fmt: skip
        except self.dynamodb.exceptions.TransactionCanceledException as cancelled:
            reasons = [r.get("Code") for r in cancelled.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    def in_flight(self) -> int:
        item = self.dynamodb.get_item(TableName=self.table_name, Key={"id": {"S": ACTIVE}}, ConsistentRead=True).get(
            "Item", {}
        )
        return int(item.get("count", {}).get("N", "0"))
