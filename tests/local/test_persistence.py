"""Snapshots of the local stack's data: S3 objects and DynamoDB items written to a directory and
put back into the resources of another moto server, in another process."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from stylelocal import persistence
from stylelocal.aws import LocalAws
from stylelocal.persistence import CURRENT, PeriodicSaver, restore, save

from .conftest import content_image, new_job

# keys a snapshot must survive: nested folders, a key that is also a folder's name, characters
# that are no file names, a dot segment
ODD_KEYS = ["a", "a/b", "dir//double", "dots/../escape", "space and ümlaut.txt", "tail/"]


@pytest.fixture
def second_moto() -> Iterator[str]:
    """Another moto server, in a process of its own: nothing is shared with this one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{endpoint}/moto-api/data.json", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, "the second moto server did not start"
                assert time.monotonic() < deadline, "the second moto server did not answer"
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def everything(aws: LocalAws) -> dict[str, Any]:
    """Every object (bytes, type, cache control, metadata) and every item (as Python values)."""
    s3, dynamodb = aws.client("s3"), aws.client("dynamodb")
    objects = {}
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            found = s3.get_object(Bucket=bucket, Key=listed["Key"])
            objects[(bucket, listed["Key"])] = (
                found["Body"].read(),
                found.get("ContentType"),
                found.get("CacheControl"),
                found.get("Metadata"),
            )
    deserialize = TypeDeserializer().deserialize
    items = {}
    for table in dynamodb.list_tables()["TableNames"]:
        scanned = dynamodb.scan(TableName=table)["Items"]
        items[table] = sorted(
            ({k: deserialize(v) for k, v in item.items()} for item in scanned),
            key=lambda i: json.dumps(i, default=repr),
        )
    return {"objects": objects, "items": items}


def populate(aws: LocalAws) -> None:
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    s3.put_object(
        Bucket=bucket,
        Key="styles/swirls.jpg",
        Body=content_image(),
        ContentType="image/jpeg",
        CacheControl="public, max-age=86400",
    )
    s3.put_object(Bucket=bucket, Key="uploads/raw.bin", Body=bytes(range(256)) * 3, Metadata={"origin": "test"})
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode(), ContentType="text/plain")
    new_job(aws, strength=0.25)  # as TRANSFER_STYLE writes it: Decimals in a nested map
    serialize = TypeSerializer().serialize
    odd_item = {
        "id": "odd",
        "price": Decimal("0.1000000000000000055511151231257827"),  # more digits than a float has
        "big": Decimal("123456789012345678901234567890"),
        "blob": Binary(b"\x00\xff\x10binary"),
        "blobs": {Binary(b"a"), Binary(b"\x00")},
        "tags": {"x", "y"},
        "numbers": {Decimal(1), Decimal("2.5")},
        "nested": {"list": [Decimal(1), "two", None, True, {"deep": Binary(b"\x01")}]},
    }
    aws.client("dynamodb").put_item(TableName="IdempotencyTable", Item={k: serialize(v) for k, v in odd_item.items()})


def test_a_snapshot_restores_everything_into_another_moto_server(aws, second_moto, tmp_path):
    populate(aws)
    original = everything(aws)

    snapshot = save(aws, tmp_path)

    assert (tmp_path / CURRENT).read_text().strip() == snapshot.name
    assert (snapshot / "s3" / aws.refs["ImagesBucket"] / "styles" / "swirls.jpg").read_bytes() == content_image()
    other = LocalAws(second_moto).create()
    assert everything(other)["objects"] == {}
    assert restore(other, tmp_path) == {"objects": len(original["objects"]), "items": 2}
    assert everything(other) == original


def test_saving_again_replaces_the_snapshot_and_shares_unchanged_objects(aws, tmp_path):
    populate(aws)
    first = save(aws, tmp_path)
    bucket_dir = first / "s3" / aws.refs["ImagesBucket"]
    unchanged, changed = (bucket_dir / "styles" / "swirls.jpg").stat().st_ino, (bucket_dir / "a").stat().st_ino
    aws.client("s3").put_object(Bucket=aws.refs["ImagesBucket"], Key="a", Body=b"new")

    second = save(aws, tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURRENT, second.name])  # the old one is gone
    bucket_dir = second / "s3" / aws.refs["ImagesBucket"]
    assert (bucket_dir / "styles" / "swirls.jpg").stat().st_ino == unchanged  # a hard link, not a download
    assert (bucket_dir / "a").stat().st_ino != changed
    assert (bucket_dir / "a").read_bytes() == b"new"


def test_a_save_that_fails_leaves_the_previous_snapshot_current(aws, tmp_path, monkeypatch):
    populate(aws)
    first = save(aws, tmp_path)
    aws.client("s3").put_object(Bucket=aws.refs["ImagesBucket"], Key="a", Body=b"lost")

    def broken(*_: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "_save_dynamodb", broken)
    with pytest.raises(OSError, match="disk full"):
        save(aws, tmp_path)

    assert persistence.latest(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURRENT, first.name])  # no partial leftovers
    assert (first / "s3" / aws.refs["ImagesBucket"] / "a").read_bytes() == b"a"


def test_restoring_an_empty_directory_restores_nothing(aws, tmp_path):
    assert restore(aws, tmp_path / "never-saved") is None
    assert everything(aws)["objects"] == {}


def test_a_table_that_no_longer_exists_is_skipped_with_a_warning(aws, tmp_path, caplog):
    populate(aws)
    snapshot = save(aws, tmp_path)
    (snapshot / "dynamodb" / "RetiredTable.jsonl").write_text(json.dumps({"id": {"S": "x"}}) + "\n")
    original = everything(aws)
    requests.post(f"{aws.endpoint}/moto-api/reset", timeout=10).raise_for_status()
    fresh = LocalAws(aws.endpoint).create()

    with caplog.at_level(logging.WARNING, logger="stylelocal.persistence"):
        restore(fresh, tmp_path)

    assert everything(fresh) == original
    assert "1 items of table RetiredTable" in caplog.text


def test_the_periodic_saver_saves_until_stopped(aws, tmp_path):
    populate(aws)
    saver = PeriodicSaver(aws, tmp_path, interval=0.1).start()
    deadline = time.monotonic() + 10
    while persistence.latest(tmp_path) is None:
        assert time.monotonic() < deadline, "no snapshot was saved"
        time.sleep(0.05)
    saver.stop()
    last = persistence.latest(tmp_path)
    time.sleep(0.3)
    assert persistence.latest(tmp_path) == last


def test_a_damaged_pointer_is_reported_clearly(tmp_path):
    (tmp_path / CURRENT).write_text("snapshot-gone\n")
    with pytest.raises(FileNotFoundError, match="names snapshot-gone, which is missing"):
        persistence.latest(tmp_path)


def test_object_files_mirror_plain_keys_and_hash_the_others():
    assert persistence._object_path("public/output/x.jpg") == "public/output/x.jpg"
    for key in ("dir//double", "dots/../escape", "tail/", "/absolute", ".keys/x"):
        assert persistence._object_path(key).startswith(".keys/"), key


def test_the_snapshot_is_json_lines_a_person_can_read(aws, tmp_path):
    populate(aws)
    snapshot = save(aws, tmp_path)
    lines = (snapshot / "dynamodb" / "IdempotencyTable.jsonl").read_text().splitlines()
    [item] = [json.loads(line) for line in lines]
    assert item["price"] == {"N": "0.1000000000000000055511151231257827"}
    assert item["blob"] == {"B": "AP8QYmluYXJ5"}  # base64
    manifest = [json.loads(line) for line in (snapshot / "s3.jsonl").read_text().splitlines()]
    [style] = [entry for entry in manifest if entry["key"] == "styles/swirls.jpg"]
    assert (style["contentType"], style["cacheControl"]) == ("image/jpeg", "public, max-age=86400")
    assert Path(snapshot / "s3" / style["bucket"] / style["file"]).is_file()


def test_the_stacks_transient_tables_are_not_kept(aws, tmp_path):
    """No worker and no execution survives a restart: the pool's table and the jobs in flight
    (with the rate limits table's short-lived counters) start over, or a restored place in flight
    would never be given back."""
    from stylelocal.__main__ import TRANSIENT_TABLES
    from styleservice.limits import Admissions
    from workerpool import Registry, new_worker_id

    Admissions(aws.refs["RateLimitsTable"]).admit("a" * 32, 5)
    assert Registry(aws.refs["WorkersTable"], aws.client("dynamodb")).reserve(new_worker_id(), 1, 60)
    new_job(aws)

    snapshot = save(aws, tmp_path, exclude=TRANSIENT_TABLES)

    kept = {path.stem for path in (snapshot / "dynamodb").iterdir()}
    assert {aws.refs[name] for name in TRANSIENT_TABLES} & kept == set()
    assert aws.refs["JobsTable"] in kept  # the jobs and the gallery are
