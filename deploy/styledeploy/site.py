"""What CloudFront serves from the images bucket, brought up to date: the pages (web/), config.json
(the WebSocket URL the pages connect to) and the style catalogue (styles/). Only what changed is
uploaded (S3's ETag of a single-part upload is the MD5 of its bytes), pages that are gone are
deleted, and the changed paths are invalidated in CloudFront, so re-running is cheap and safe."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .runner import ROOT, Runner

WEB = ROOT / "web"
PAGES_PREFIX = "web/"
CONFIG_KEY = "web/config.json"
# Not pages: the screenshots are the README's, config.json is written from the stack's outputs.
EXCLUDED = ("screenshots/", "README.md", "config.json")
PAGE_CACHE = "public, max-age=300"  # a deploy invalidates; a missed invalidation heals in minutes
INVALIDATE_ALL_OVER = 15  # more paths than this: one wildcard per area (CloudFront bills per path)


@dataclass(frozen=True)
class Upload:
    key: str
    body: bytes
    content_type: str
    cache_control: str

    @property
    def md5(self) -> str:
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest()


@dataclass
class SiteChanges:
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return sorted("/" + key for key in {*self.uploaded, *self.deleted})


def content_type(path: Path) -> str:
    if path.suffix == ".js":
        return "text/javascript; charset=utf-8"  # mimetypes' answer varies with the host's tables
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") or guessed.endswith("json") else guessed


def pages(web: Path = WEB) -> list[Upload]:
    found = []
    for path in sorted(p for p in web.rglob("*") if p.is_file()):
        relative = path.relative_to(web).as_posix()
        if any(relative == e or relative.startswith(e) for e in EXCLUDED):
            continue
        found.append(Upload(PAGES_PREFIX + relative, path.read_bytes(), content_type(path), PAGE_CACHE))
    return found


def config(websocket_url: str) -> Upload:
    body = (json.dumps({"websocketUrl": websocket_url}, indent=2) + "\n").encode()
    return Upload(CONFIG_KEY, body, "application/json", "no-cache")


def styles() -> list[Upload]:
    """The style catalogue, exactly the objects `make up` seeds (stylelocal.catalogue.objects()):
    the paintings and drawn styles as styles/<name>.jpg, and the manifest styles/catalogue.json,
    each with the caching the catalogue gives it."""
    from stylelocal import catalogue

    return [Upload(o.key, o.body(), o.content_type, o.cache_control) for o in catalogue.objects()]


def existing(runner: Runner, bucket: str, prefix: str) -> dict[str, str]:
    """key -> MD5 (the ETag without its quotes) of what is under `prefix`; nothing in a dry run."""
    found: dict[str, str] = {}
    token: dict[str, str] = {}
    while True:
        page = runner.call("s3", "list_objects_v2", Bucket=bucket, Prefix=prefix, read={"Contents": []}, **token)
        found.update({item["Key"]: item["ETag"].strip('"') for item in page.get("Contents", [])})
        if not page.get("IsTruncated"):
            return found
        token = {"ContinuationToken": page["NextContinuationToken"]}


def put_changed(runner: Runner, bucket: str, uploads: Iterable[Upload], present: dict[str, str]) -> list[str]:
    changed = []
    for upload in uploads:
        if present.get(upload.key) == upload.md5:
            continue
        runner.call(
            "s3", "put_object", Bucket=bucket, Key=upload.key, Body=upload.body, ContentType=upload.content_type,
            CacheControl=upload.cache_control,
        )  # fmt: skip
        changed.append(upload.key)
    return changed


def publish(runner: Runner, bucket: str, websocket_url: str, web: Path = WEB) -> SiteChanges:
    """Pages and config.json in sync with web/ (stale pages deleted), and the catalogue's styles
    uploaded where missing or different (styles the operator added are left alone)."""
    changes = SiteChanges()
    present = existing(runner, bucket, PAGES_PREFIX)
    wanted = [*pages(web), config(websocket_url)]
    changes.uploaded += put_changed(runner, bucket, wanted, present)
    stale = sorted(set(present) - {u.key for u in wanted})
    for start in range(0, len(stale), 1000):  # DeleteObjects takes 1000 keys at a time
        batch = stale[start : start + 1000]
        runner.call("s3", "delete_objects", Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch]})
        changes.deleted += batch
    changes.uploaded += put_changed(runner, bucket, styles(), existing(runner, bucket, "styles/"))
    return changes


def invalidate(runner: Runner, distribution_id: str, changes: SiteChanges) -> list[str]:
    """Invalidates the changed paths (none changed: nothing to do); the paths asked for."""
    paths = changes.paths
    if not paths:
        return []
    if len(paths) > INVALIDATE_ALL_OVER:
        paths = sorted({"/" + p.split("/")[1] + "/*" for p in paths})
    batch = {"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": f"deploy-{time.time_ns()}"}
    runner.call("cloudfront", "create_invalidation", DistributionId=distribution_id, InvalidationBatch=batch)
    return paths
