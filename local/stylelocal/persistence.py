"""Keeping the local stack's data across restarts: moto keeps everything in memory, so its S3
objects and DynamoDB items are written to a directory (on shutdown and periodically) and put back
into the freshly created resources on the next start.

    save(aws, directory)      # a new snapshot; the previous one stays until this one is complete
    restore(aws, directory)   # the latest snapshot's objects and items, into aws's resources
    saver = PeriodicSaver(aws, directory, interval=60).start(); ...; saver.stop()

A directory holds snapshots and a pointer to the latest complete one:

    CURRENT                         the name of the latest snapshot (replaced atomically)
    snapshot-<time>-<id>/
        s3.jsonl                    one line per object: bucket, key, file, contentType,
                                    cacheControl, metadata, etag
        s3/<bucket>/<key>           the objects' bytes (keys that are not plain relative paths
                                    are stored under s3/<bucket>/.keys/<sha256 of the key>)
        dynamodb/<table>.jsonl      one item per line, in DynamoDB's typed JSON (what boto3's
                                    TypeSerializer makes: {"S": ...}, {"N": "1.5"}, sets, maps),
                                    binary values base64-encoded, so numbers keep their exact
                                    decimal digits and bytes survive

A snapshot is written under a temporary name and renamed when complete, and only then does CURRENT
name it (written to a temporary file and renamed over the old one), so a crash while saving
leaves the previous snapshot in place. Objects whose ETag did not change since the previous
snapshot are hard-linked from it instead of being downloaded again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
PREFIX = "snapshot-"
_save_lock = threading.Lock()  # one save at a time in this process (periodic and on shutdown)


def _buckets(aws: Any) -> list[str]:
    return [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]


def _tables(aws: Any) -> list[str]:
    dynamodb = aws.client("dynamodb")
    return [name for page in dynamodb.get_paginator("list_tables").paginate() for name in page["TableNames"]]


def _object_path(key: str) -> str:
    """Where an object's bytes go under s3/<bucket>/: its key when that is a plain relative path."""
    parts = key.split("/")
    plain = all(part not in ("", ".", "..") for part in parts) and not parts[0].startswith(".keys")
    return key if plain and "\\" not in key and "\0" not in key else _hashed_path(key)


def _hashed_path(key: str) -> str:
    return f".keys/{hashlib.sha256(key.encode()).hexdigest()}"


# DynamoDB's typed JSON with bytes as base64 (the low-level client gives B and BS as bytes)


def _encode(value: dict[str, Any]) -> dict[str, Any]:
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in inner]}
    if kind == "M":
        return {"M": {k: _encode(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_encode(v) for v in inner]}
    return value


def _decode(value: dict[str, Any]) -> dict[str, Any]:
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if kind == "M":
        return {"M": {k: _decode(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_decode(v) for v in inner]}
    return value


def latest(directory: str | Path) -> Path | None:
    """The latest complete snapshot in `directory`, or None."""
    pointer = Path(directory) / CURRENT
    if not pointer.is_file():
        return None
    snapshot = Path(directory) / pointer.read_text().strip()
    if not snapshot.is_dir():
        raise FileNotFoundError(f"{pointer} names {snapshot.name}, which is missing: the data directory is damaged")
    return snapshot


def save(aws: Any, directory: str | Path, exclude: Iterable[str] = ()) -> Path:
    """Writes every S3 object of every bucket and every item of every table (but the tables whose
    logical ids `exclude` names: state that must not outlive the stack, like the worker pool's) as
    a new snapshot in `directory`, makes it the current one and removes the older ones. Returns
    the snapshot."""
    directory = Path(directory)
    with _save_lock:
        directory.mkdir(parents=True, exist_ok=True)
        previous = latest(directory)
        name = f"{PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        partial = directory / f".{name}.partial"
        try:
            objects = _save_s3(aws, partial, previous)
            items = _save_dynamodb(aws, partial, {aws.refs[name] for name in exclude})
            _fsync_tree(partial)
            partial.rename(directory / name)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        pointer = directory / f".{CURRENT}.partial"
        with open(pointer, "w") as out:
            out.write(name + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(pointer, directory / CURRENT)
        for old in directory.iterdir():  # older snapshots and leftovers of interrupted saves
            if old.name != name and old.is_dir() and (old.name.startswith(PREFIX) or old.name.endswith(".partial")):
                shutil.rmtree(old, ignore_errors=True)
        log.info("saved %d objects and %d items to %s", objects, items, directory / name)
        return directory / name


def _save_s3(aws: Any, snapshot: Path, previous: Path | None) -> int:
    s3 = aws.client("s3")
    before = {}  # (bucket, key) -> (etag, file) in the previous snapshot
    if previous is not None and (previous / "s3.jsonl").is_file():
        for line in (previous / "s3.jsonl").read_text().splitlines():
            entry = json.loads(line)
            before[(entry["bucket"], entry["key"])] = (
                entry.get("etag"),
                previous / "s3" / entry["bucket"] / entry["file"],
            )
    snapshot.mkdir(parents=True)
    count = 0
    with open(snapshot / "s3.jsonl", "w") as manifest:
        for bucket in _buckets(aws):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for listed in page.get("Contents", []):
                    key = listed["Key"]
                    found = s3.get_object(Bucket=bucket, Key=key)
                    etag, old_file = before.get((bucket, key), (None, None))
                    unchanged = old_file if etag == found["ETag"] and old_file is not None else None
                    try:
                        file = _object_path(key)
                        _store(found["Body"], snapshot / "s3" / bucket / file, unchanged)
                    except OSError:  # keys "a" and "a/b", a name too long for the file system: by hash
                        file = _hashed_path(key)
                        found = s3.get_object(Bucket=bucket, Key=key)
                        _store(found["Body"], snapshot / "s3" / bucket / file, unchanged)
                    entry = {
                        "bucket": bucket,
                        "key": key,
                        "file": file,
                        "contentType": found.get("ContentType"),
                        "cacheControl": found.get("CacheControl"),
                        "metadata": found.get("Metadata", {}),
                        "etag": found["ETag"],
                    }
                    manifest.write(json.dumps(entry) + "\n")
                    count += 1
    return count


def _store(body: Any, target: Path, unchanged: Path | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if unchanged is not None and unchanged.is_file():
        with contextlib.suppress(OSError):
            os.link(unchanged, target)  # the same bytes as in the previous snapshot: share them
            body.close()
            return
    with open(target, "xb") as out:
        shutil.copyfileobj(body, out)


def _save_dynamodb(aws: Any, snapshot: Path, exclude: set[str]) -> int:
    dynamodb = aws.client("dynamodb")
    (snapshot / "dynamodb").mkdir()
    count = 0
    for table in _tables(aws):
        if table in exclude:
            continue
        with open(snapshot / "dynamodb" / f"{table}.jsonl", "w") as out:
            for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                for item in page.get("Items", []):
                    out.write(json.dumps({name: _encode(value) for name, value in item.items()}) + "\n")
                    count += 1
    return count


def _fsync_tree(root: Path) -> None:
    """Flushes the snapshot's files to disk before it is named current."""
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def restore(aws: Any, directory: str | Path) -> dict[str, int] | None:
    """Puts the latest snapshot's objects and items into aws's (freshly created) buckets and
    tables; buckets and tables that no longer exist are skipped with a warning. Returns
    {"objects": n, "items": n}, or None when `directory` holds no snapshot yet."""
    snapshot = latest(directory)
    if snapshot is None:
        return None
    objects = _restore_s3(aws, snapshot)
    items = _restore_dynamodb(aws, snapshot)
    log.info("restored %d objects and %d items from %s", objects, items, snapshot)
    return {"objects": objects, "items": items}


def _restore_s3(aws: Any, snapshot: Path) -> int:
    s3 = aws.client("s3")
    buckets = set(_buckets(aws))
    count = 0
    manifest = snapshot / "s3.jsonl"
    for line in manifest.read_text().splitlines() if manifest.is_file() else []:
        entry = json.loads(line)
        if entry["bucket"] not in buckets:
            log.warning("not restored: s3://%s/%s (no such bucket now)", entry["bucket"], entry["key"])
            continue
        extra: dict[str, Any] = {"Metadata": entry.get("metadata") or {}}
        if entry.get("contentType"):
            extra["ContentType"] = entry["contentType"]
        if entry.get("cacheControl"):
            extra["CacheControl"] = entry["cacheControl"]
        with open(snapshot / "s3" / entry["bucket"] / entry["file"], "rb") as body:
            s3.put_object(Bucket=entry["bucket"], Key=entry["key"], Body=body, **extra)
        count += 1
    return count


def _restore_dynamodb(aws: Any, snapshot: Path) -> int:
    dynamodb = aws.client("dynamodb")
    tables = set(_tables(aws))
    count = 0
    for path in sorted((snapshot / "dynamodb").glob("*.jsonl")):
        table = path.stem
        lines = path.read_text().splitlines()
        if table not in tables:
            if lines:
                log.warning("not restored: %d items of table %s (no such table now)", len(lines), table)
            continue
        for chunk in _chunks([json.loads(line) for line in lines], 25):  # BatchWriteItem's limit
            requests: dict[str, Any] = {
                table: [{"PutRequest": {"Item": {k: _decode(v) for k, v in item.items()}}} for item in chunk]
            }
            while requests:
                requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            count += len(chunk)
    return count


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PeriodicSaver:
    """Saves a snapshot every `interval` seconds in a thread; a failed save is logged, and the
    next one tries again. stop() ends the thread (it does not save: call save() for that)."""

    def __init__(self, aws: Any, directory: str | Path, interval: float = 60.0, exclude: Iterable[str] = ()) -> None:
        self.aws = aws
        self.directory = Path(directory)
        self.exclude = tuple(exclude)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="snapshots", daemon=True)

    def start(self) -> PeriodicSaver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                save(self.aws, self.directory, self.exclude)
            except Exception:
                log.exception("could not save a snapshot to %s", self.directory)
