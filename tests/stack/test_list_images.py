"""LIST_IMAGES against moto: the public gallery, newest first, page by page, never a private job."""

from __future__ import annotations

import base64
import json
import time

import pytest
from styleservice.jobs import Jobs, hash_token

from .local_aws import LocalAws
from .routes_support import answer, event_files, jobs_table, refusal, with_body

FUNCTION = "ListImagesFunction"


def job(jobs: Jobs, number: int, private: bool) -> str:
    job_id = f"{number:032x}"
    area = "private" if private else "public"
    jobs.create(
        {
            "jobId": job_id,
            "connectionId": "Lx8cKfQ2oAMCJfA=",
            "tokenHash": hash_token(f"token-{number}"),
            "isPrivate": private,
            "inputKey": f"{area}/input/{job_id}.png",
            "style": "starry-night",
            "styleKey": "styles/starry-night.jpg",
            "outputKey": f"{area}/output/{job_id}.jpg",
            "options": {"preset": "preview"},
        }
    )
    return job_id


@pytest.fixture
def gallery(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Public and private jobs that succeeded, interleaved in time, and some that did not."""
    jobs = jobs_table(aws, monkeypatch)
    done: dict[str, list[str]] = {"public": [], "private": []}
    for number in range(1, 8):
        private = number % 2 == 0
        job_id = job(jobs, number, private)
        area = "private" if private else "public"
        assert jobs.mark_succeeded(job_id, f"{area}/output/{job_id}.jpg", public=not private)
        done[area].append(job_id)
        time.sleep(0.003)  # distinct completedAt (ms), so that "newest first" is one order
    job(jobs, 20, private=False)  # still SUBMITTED
    failed = job(jobs, 21, private=False)
    jobs.mark_failed(failed, "the photo could not be read")
    return done


def test_every_event_file_is_exercised():
    assert {path.split("/")[1].removesuffix(".json") for path in event_files("list_images")} == {
        "first_page", "default_limit", "forged_cursor", "bad_cursor", "limit_too_large", "limit_string",
    }  # fmt: skip


def test_pages_hold_public_results_newest_first_and_never_a_private_job(aws: LocalAws, gallery):
    newest_first = list(reversed(gallery["public"]))
    event_name, first = answer(aws.invoke(FUNCTION, "list_images/first_page.json"))  # limit 2
    assert event_name == "IMAGES"
    assert [image["jobId"] for image in first["images"]] == newest_first[:2]
    assert first["cursor"]
    seen = list(first["images"])
    cursor = first["cursor"]
    while cursor:
        _, page = answer(aws.invoke(FUNCTION, with_body("list_images/first_page.json", cursor=cursor)))
        seen += page["images"]
        cursor = page["cursor"]
    assert [image["jobId"] for image in seen] == newest_first
    assert not {image["jobId"] for image in seen} & set(gallery["private"])
    for image in seen:
        job_id = image["jobId"]
        assert image["input"] == f"https://cdn.local.test/public/input/{job_id}.png"
        assert image["result"] == f"https://cdn.local.test/public/output/{job_id}.jpg"
        assert image["style"] == "starry-night"
        assert isinstance(image["completedAt"], int)
        assert "private" not in image["input"] + image["result"]
        assert set(image) == {"jobId", "input", "result", "style", "completedAt"}
    assert [image["completedAt"] for image in seen] == sorted((image["completedAt"] for image in seen), reverse=True)


def test_the_default_page_size_holds_the_whole_small_gallery(aws: LocalAws, gallery):
    _, page = answer(aws.invoke(FUNCTION, "list_images/default_limit.json"))
    assert [image["jobId"] for image in page["images"]] == list(reversed(gallery["public"]))
    assert page["cursor"] is None


def test_private_results_alone_make_an_empty_gallery(aws: LocalAws, monkeypatch: pytest.MonkeyPatch):
    jobs = jobs_table(aws, monkeypatch)
    for number in (1, 2):
        job_id = job(jobs, number, private=True)
        assert jobs.mark_succeeded(job_id, f"private/output/{job_id}.jpg", public=False)
    assert answer(aws.invoke(FUNCTION, "list_images/default_limit.json")) == ("IMAGES", {"images": [], "cursor": None})


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad_cursor", "cursor: cursor is not one this service gave out; leave it out to start from the newest"),
        ("forged_cursor", "cursor: cursor is not one this service gave out; leave it out to start from the newest"),
        ("limit_too_large", "limit: Input should be less than or equal to 50"),
        ("limit_string", "limit: Input should be a valid integer"),
    ],
)
def test_refused_with_a_clear_message(aws: LocalAws, gallery, name: str, text: str):
    assert refusal(aws.invoke(FUNCTION, f"list_images/{name}.json")) == text


def old_style(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        # the DynamoDB keys that cursors used to carry, as the attacks of issue 12 wrote them
        old_style({"jobId": "00000000000000000000000000000001", "feed": "public", "completedAt": 10**40}),
        old_style({"jobId": "00000000000000000000000000000001", "feed": "public", "completedAt": True}),
        old_style({"jobId": "", "feed": "public", "completedAt": -1}),
        old_style({"jobId": "x" * 1400, "feed": "public", "completedAt": 1}),
        "00000000000000000000000000000002",  # a private job that succeeded
        f"{20:032x}",  # a public job still SUBMITTED
        f"{21:032x}",  # a public job that FAILED
        f"{99:032x}",  # no such job
        "00000000000000000000000000000001\n",
        "0000000000000000000000000000000G",
        "",
    ],
)
def test_only_a_gallery_entry_is_a_cursor(aws: LocalAws, gallery, cursor: str):
    text = refusal(aws.invoke(FUNCTION, with_body("list_images/first_page.json", cursor=cursor)))
    assert text == "cursor: cursor is not one this service gave out; leave it out to start from the newest"


def test_a_cursor_continues_after_the_entry_it_names(aws: LocalAws, gallery):
    newest_first = list(reversed(gallery["public"]))
    _, page = answer(aws.invoke(FUNCTION, with_body("list_images/first_page.json", cursor=newest_first[0])))
    assert [image["jobId"] for image in page["images"]] == newest_first[1:3]
    assert page["cursor"] == newest_first[2]
