"""The jobs table: one item per style-transfer job.

Item: jobId (key), status (SUBMITTED, RUNNING, SUCCEEDED, FAILED, DELETED), connectionId,
tokenHash, isPrivate, inputKey, style (the first style's name, "custom" for an upload), blend (a
blend's [{style, weight}], weights summing to 1), styleKey, blendKeys, outputKey, options,
progress (0..1), previewKey, resultKey, error, createdAt/updatedAt/completedAt/deletedAt (epoch
ms), expiresAt (epoch s, the table's TTL; removed when the job becomes a Feed item). Public jobs
that succeed also get feed="public": the sparse index `Feed` (feed, completedAt) serves LIST_IMAGES
newest first.

A job its owner took back (DELETE_JOB) stays a day as a DELETED tombstone without its Feed
attribute, so that whatever of it still arrives (a result, a preview) is recognised and removed
rather than recorded; to everyone else it no longer exists.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .settings import settings
from .storage import public_url

FEED_INDEX = "Feed"
FEED = "public"
SUBMITTED, RUNNING, SUCCEEDED, FAILED = "SUBMITTED", "RUNNING", "SUCCEEDED", "FAILED"
DELETED = "DELETED"
TOMBSTONE_SECONDS = 86400  # longer than any execution (an hour): a late result still finds it


def now_ms() -> int:
    return int(time.time() * 1000)


def new_token() -> tuple[str, str]:
    """(token for the client, hash to store): the token itself is never stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(item: dict[str, Any], token: str) -> bool:
    return hmac.compare_digest(str(item.get("tokenHash", "")), hash_token(token))


# Compared against when there is no job, so that an unknown job costs what a wrong token costs:
# the same hash, the same comparison (no token hashes to it, it is not a SHA-256 of anything).
_NO_JOB_HASH = "-" * 64


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints or floats, so that items can go into JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def gallery_entry(item: dict[str, Any]) -> dict[str, Any]:
    """A public painting as the Feed shows it (LIST_IMAGES, GET_IMAGE, the public
    TRANSFER_STYLE_COMPLETED broadcast): {jobId, input, result, style, completedAt}, and a blend's
    shares as `blend` [{style, weight}]."""
    entry = {
        "jobId": item["jobId"],
        "input": public_url(item["inputKey"]),
        "result": public_url(item.get("resultKey") or item["outputKey"]),
        "style": item.get("style"),
        "completedAt": item.get("completedAt"),
    }
    if item.get("blend"):
        entry["blend"] = item["blend"]
    return entry


class Jobs:
    def __init__(self, table_name: str | None = None) -> None:
        self.table = boto3.resource("dynamodb").Table(table_name or settings.jobs_table)

    def create(self, item: dict[str, Any]) -> None:
        now = now_ms()
        item = {**item, "status": SUBMITTED, "progress": 0, "createdAt": now, "updatedAt": now}
        self.table.put_item(Item=json.loads(json.dumps(item), parse_float=Decimal),
                            ConditionExpression="attribute_not_exists(jobId)")  # fmt: skip

    def get_with_token(self, job_id: str, token: str) -> dict[str, Any] | None:
        """The job, only if `token` is its token. A wrong token and an unknown job do the same
        work (one small read of the token hash alone, one hash, one constant-time comparison), so
        the time of the answer does not tell them apart; only the token's holder gets a second
        read, of the whole item."""
        found = self.table.get_item(Key={"jobId": job_id}, ConsistentRead=True, ProjectionExpression="tokenHash")
        stored = str(found.get("Item", {}).get("tokenHash", _NO_JOB_HASH))
        if not hmac.compare_digest(stored, hash_token(token)):
            return None
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"jobId": job_id}, ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def set_progress(self, job_id: str, progress: float) -> bool:
        """Record progress of a job still running; False if it already ended (a late message)."""
        return self._update(
            job_id,
            "SET progress = :p, #s = :running, updatedAt = :now",
            "#s IN (:submitted, :running)",
            {":p": Decimal(str(round(progress, 4))), ":running": RUNNING, ":submitted": SUBMITTED},
        )

    def set_preview(self, job_id: str, preview_key: str) -> bool:
        """Record the instant preview; False if the job already ended (its painting supersedes it)."""
        return self._update(
            job_id,
            "SET previewKey = :preview, updatedAt = :now",
            "#s IN (:submitted, :running)",
            {":preview": preview_key, ":submitted": SUBMITTED, ":running": RUNNING},
        )

    def mark_succeeded(self, job_id: str, result_key: str, public: bool) -> bool:
        """False if the job had already succeeded (a redelivered result)."""
        now = now_ms()
        # a Feed item is kept until deleted: its expiry (TTL, set by TRANSFER_STYLE) goes
        feed = ", feed = :feed REMOVE expiresAt" if public else ""
        values: dict[str, Any] = {":result": result_key, ":done": SUCCEEDED, ":completed": now}
        if public:
            values[":feed"] = FEED
        return self._update(
            job_id,
            f"SET #s = :done, resultKey = :result, progress = :one, completedAt = :completed, updatedAt = :now{feed}",
            "#s <> :done AND #s <> :deleted",  # a job taken back is never brought back by its result
            {**values, ":one": 1, ":deleted": DELETED},
        )

    def mark_deleted(self, job_id: str) -> dict[str, Any] | None:
        """Takes a job back: a DELETED tombstone, out of the Feed, gone in a day; the item as it
        was before (None if there was none)."""
        now = now_ms()
        try:
            answer = self.table.update_item(
                Key={"jobId": job_id},
                UpdateExpression="SET #s = :deleted, deletedAt = :now, updatedAt = :now, expiresAt = :expires "
                "REMOVE feed, previewKey, resultKey",
                ConditionExpression="attribute_exists(jobId)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":deleted": DELETED,
                    ":now": now,
                    ":expires": now // 1000 + TOMBSTONE_SECONDS,
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as failure:
            if failure.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return plain(answer.get("Attributes")) or None

    def mark_failed(self, job_id: str, error: str) -> bool:
        """False if the job had already ended."""
        return self._update(
            job_id,
            "SET #s = :failed, #e = :error, updatedAt = :now",
            "#s IN (:submitted, :running)",
            {":failed": FAILED, ":error": error[:1000], ":submitted": SUBMITTED, ":running": RUNNING},
            names={"#e": "error"},
        )

    def _update(
        self, job_id: str, expression: str, condition: str, values: dict[str, Any], names: dict[str, str] | None = None
    ) -> bool:
        try:
            self.table.update_item(
                Key={"jobId": job_id},
                UpdateExpression=expression,
                ConditionExpression=f"attribute_exists(jobId) AND ({condition})",
                ExpressionAttributeNames={"#s": "status", **(names or {})},
                ExpressionAttributeValues={**values, ":now": now_ms()},
            )
        except ClientError as failure:
            if failure.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # what a public painting's permalink reads of its job: the Feed's attributes, nothing private
    PUBLIC_ATTRIBUTES = ("jobId", "feed", "isPrivate", "inputKey", "outputKey", "resultKey", "style", "blend",
                         "completedAt")  # fmt: skip

    def public_item(self, job_id: str) -> dict[str, Any] | None:
        """A Feed item (a public job that succeeded and was not taken back) by its id, else None."""
        found = self.table.get_item(
            Key={"jobId": job_id},
            ProjectionExpression=", ".join(f"#{name}" for name in self.PUBLIC_ATTRIBUTES),
            ExpressionAttributeNames={f"#{name}": name for name in self.PUBLIC_ATTRIBUTES},
        ).get("Item")
        if not found or found.get("feed") != FEED or found.get("isPrivate") is not False or "resultKey" not in found:
            return None
        return plain(found)

    def public_page(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """The newest public results first; `cursor` continues where the last page stopped."""
        query: dict[str, Any] = {
            "IndexName": FEED_INDEX,
            "KeyConditionExpression": "feed = :feed",
            "ExpressionAttributeValues": {":feed": FEED},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            query["ExclusiveStartKey"] = self._feed_key(cursor)
        page = self.table.query(**query)
        last = page.get("LastEvaluatedKey")
        return [plain(item) for item in page.get("Items", [])], str(last["jobId"]) if last else None

    def _feed_key(self, cursor: str) -> dict[str, Any]:
        """The index position a cursor names, read from the job itself, never from the client.

        A cursor is the jobId of the last entry of a page. It is honoured only when that job is
        in the gallery now, and the position comes from the stored item: nothing the client
        writes reaches DynamoDB's ExclusiveStartKey. Every such jobId is a cursor this service
        gives out (the last entry of some page, for some limit), so a made-up cursor can only
        ask for a page the service would give anyway."""
        if not JOB_CURSOR.match(cursor):
            raise ValueError(CURSOR_REFUSED)
        item = self.table.get_item(
            Key={"jobId": cursor}, ConsistentRead=True, ProjectionExpression="jobId, feed, completedAt"
        ).get("Item")
        if not item or item.get("feed") != FEED or not isinstance(item.get("completedAt"), Decimal):
            raise ValueError(CURSOR_REFUSED)
        return {"jobId": item["jobId"], "feed": FEED, "completedAt": item["completedAt"]}


CURSOR_REFUSED = "cursor is not one this service gave out"
JOB_CURSOR = re.compile(r"^[0-9a-f]{32}\Z")
