"""TRANSFER_STYLE against moto: each event file under events/transfer_style/, run as `sam local
invoke` would; then the flows that need values known only at run time (a fresh upload, a failed
start)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stylelocal import moto_fixes
from styleservice.jobs import hash_token
from styleservice.protocol import MAX_MESSAGE_BYTES

from .local_aws import LocalAws, event
from .routes_support import (
    CONNECTION_ID,
    PNG,
    UPLOAD_PNG,
    UPLOAD_STYLE,
    WEBP,
    answer,
    assert_nothing_started,
    bucket,
    event_files,
    executions,
    job_items,
    jobs_table,
    jpeg,
    keys_under,
    png_claiming,
    refusal,
    seed,
    with_body,
)

FUNCTION = "TransferStyleFunction"
VALID = "image must be a base64 data URL"  # the start of the help for an image that names nothing usable
STYLE_HELP = "style must be a style name from LIST_STYLES or a key from REQUEST_UPLOAD"

# event file -> a part of the ERROR message its client must get
REFUSED = {
    "bad_json": "the message is not valid JSON",
    "not_an_object": "the message must be a JSON object",
    "empty_body": "empty message",
    "missing_is_private": "isPrivate is required",
    "missing_image": "image is required",
    "is_private_string": "isPrivate: Input should be a valid boolean",
    "size_string": "options.size: Input should be a valid integer",
    "size_too_large": "options.size: Input should be less than or equal to 2048",
    "strength_out_of_range": "options.strength: Input should be less than or equal to 1",
    "unknown_preset": "options.preset: Input should be 'auto', 'preview', 'standard' or 'high'",
    "unknown_option": "unknown field options.iterations",
    "unknown_field": "unknown field callbackUrl",
    "oversize_image": "image is over the 128 KB message limit: send large photos with REQUEST_UPLOAD",
    "not_an_image": "the image is not a JPEG, PNG or WebP file",
    "type_mismatch": "the image says image/jpeg but its bytes are image/png",
    "gif_data_url": "image/gif is not accepted",
    "not_base64": VALID,
    "unknown_style": "unknown style 'no-such-style': LIST_STYLES gives the catalogue",
    "style_traversal": STYLE_HELP,
    "style_private_output": STYLE_HELP,
    "style_dotdot_in_styles": STYLE_HELP,
    "style_absolute_path": STYLE_HELP,
    "style_url_encoded": STYLE_HELP,
    "style_trailing_newline": STYLE_HELP,
    "style_upload_not_an_image": "style: the upload at uploads/0123456789abcdef0123456789abcdef.png is not a JPEG",
    "style_missing_upload": "style: there is no upload at uploads/deadbeefdeadbeefdeadbeefdeadbeef.png",
    "image_uploads_traversal": VALID,
    "image_private_output": VALID,
    "image_public_input": VALID,
    "image_absolute_path": VALID,
    "image_url_encoded": VALID,
    "image_upload_then_traversal": VALID,
    "image_upload_trailing_newline": VALID,
    "image_s3_url": VALID,
    "missing_upload": "image: there is no upload at uploads/deadbeefdeadbeefdeadbeefdeadbeef.png",
    "upload_not_an_image": "image: the upload at uploads/0123456789abcdef0123456789abcdef.png is not a JPEG",
    "upload_empty": "image: the upload at uploads/00000000000000000000000000000000.webp is not a JPEG",
    "blend_too_many": "style must be a style name or an upload's key, or a list of 1 to 3 of them",
    "blend_weights_mismatch": "options.styleBlend has 1 weight for 2 styles: give one weight per style",
    "blend_repeats_a_style": "style: a blend names each style once",
    "blend_traversal": "style.1 must be a style name from LIST_STYLES or a key from REQUEST_UPLOAD",
    "blend_zero_weights": "options: styleBlend needs a weight above 0",
}
# event file -> (content type stored, its bytes, isPrivate, style, styleKey)
ACCEPTED = {
    "valid_data_url": ("image/png", PNG, False, "starry-night", "styles/starry-night.jpg"),
    "private_jpeg": ("image/jpeg", None, True, "the-scream", "styles/the-scream.jpg"),
    "webp_data_url": ("image/webp", WEBP, False, "starry-night", "styles/starry-night.jpg"),
    "upload_image": ("image/png", PNG, False, "starry-night", "styles/starry-night.jpg"),
    "upload_style": ("image/jpeg", None, True, "custom", "private/style/{jobId}.jpg"),  # its own copy
}
EXTENSION = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
DEFAULT_OPTIONS = {"preset": "auto", "size": None, "strength": 0.5, "preserveColors": False,
                   "styleScale": 1.0, "seed": 0}  # fmt: skip


@pytest.fixture
def seeded(aws: LocalAws) -> LocalAws:
    seed(aws)
    return aws


def test_every_event_file_has_an_expectation():
    names = {path.split("/")[1].removesuffix(".json") for path in event_files("transfer_style")}
    assert names == set(REFUSED) | set(ACCEPTED) | set(BLENDS)
    assert not set(REFUSED) & set(ACCEPTED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_clear_message_and_nothing_started(seeded: LocalAws, name: str):
    text = refusal(seeded.invoke(FUNCTION, f"transfer_style/{name}.json"))
    assert REFUSED[name] in text
    assert_nothing_started(seeded)


def test_the_oversize_event_really_is_over_the_message_limit():
    assert len(event("transfer_style/oversize_image.json")["body"]) > MAX_MESSAGE_BYTES


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_stores_the_image_records_the_job_and_starts_the_execution(
    seeded: LocalAws, name: str, capsys: pytest.CaptureFixture[str]
):
    content_type, data, private, style, style_key = ACCEPTED[name]
    data = jpeg() if data is None else data
    event_name, accepted = answer(seeded.invoke(FUNCTION, f"transfer_style/{name}.json"))
    assert event_name == "TRANSFER_STYLE_ACCEPTED", accepted
    job_id, token = accepted["jobId"], accepted["jobToken"]
    style_key = style_key.format(jobId=job_id)
    assert set(accepted) == {"jobId", "jobToken"}
    assert len(job_id) == 32
    assert len(token) >= 32

    area = "private" if private else "public"
    input_key = f"{area}/input/{job_id}.{EXTENSION[content_type]}"
    stored = seeded.client("s3").get_object(Bucket=bucket(seeded), Key=input_key)
    assert stored["Body"].read() == data
    assert stored["ContentType"] == content_type
    copies = [style_key] if style == "custom" else []  # an uploaded style's copy, beside the photo
    assert sorted(keys_under(seeded, "public/") + keys_under(seeded, "private/")) == sorted([input_key, *copies])

    (item,) = job_items(seeded)
    job = seeded.client("dynamodb").get_item(TableName="JobsTable", Key={"jobId": {"S": job_id}})["Item"]
    assert job == item
    assert job["status"] == {"S": "SUBMITTED"}
    assert job["connectionId"] == {"S": CONNECTION_ID}
    assert job["isPrivate"] == {"BOOL": private}
    assert job["inputKey"] == {"S": input_key}
    assert job["outputKey"] == {"S": f"{area}/output/{job_id}.jpg"}
    assert job["style"] == {"S": style}
    assert job["styleKey"] == {"S": style_key}
    # only the token's hash is stored: the item cannot be used to read a private job
    assert job["tokenHash"] == {"S": hash_token(token)}
    assert token not in json.dumps(job)
    assert "feed" not in job  # nothing in the public gallery until it succeeds

    (execution,) = executions(seeded)
    assert execution["name"] == job_id
    described = seeded.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    options = json.loads(described["input"])["options"]
    assert json.loads(described["input"]) == {
        "jobId": job_id,
        "inputKey": input_key,
        "styleKey": style_key,
        "outputKey": f"{area}/output/{job_id}.jpg",
        "isPrivate": private,
        "options": options,
    }
    sent = json.loads(event(f"transfer_style/{name}.json")["body"]).get("options", {})
    assert options == {**DEFAULT_OPTIONS, **sent}

    metric = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"JobSubmitted"' in line]
    assert len(metric) == 1
    assert metric[0]["JobSubmitted"] == [1.0]
    assert metric[0]["isPrivate"] == str(private).lower()
    assert metric[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StyleTransfer"
    assert "isPrivate" in metric[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]


# event file -> (isPrivate, the job's styleKey and blendKeys, the item's blend)
BLENDS = {
    "blend": (
        False,
        ["styles/starry-night.jpg", "styles/the-scream.jpg"],
        [{"style": "starry-night", "weight": 0.7}, {"style": "the-scream", "weight": 0.3}],
    ),
    "blend_with_upload": (  # no weights: equal shares; the upload pinned to the job's copy at its place
        True,
        ["styles/starry-night.jpg", "private/style/{jobId}-1.jpg"],
        [{"style": "starry-night", "weight": 0.5}, {"style": "custom", "weight": 0.5}],
    ),
}


@pytest.mark.parametrize("name", sorted(BLENDS))
def test_a_blend_names_every_style_in_the_job_and_its_shares_on_the_item(
    seeded: LocalAws, name: str, monkeypatch: pytest.MonkeyPatch
):
    private, style_keys, blend = BLENDS[name]
    event_name, accepted = answer(seeded.invoke(FUNCTION, f"transfer_style/{name}.json"))
    assert event_name == "TRANSFER_STYLE_ACCEPTED", accepted
    job_id = accepted["jobId"]
    style_keys = [key.format(jobId=job_id) for key in style_keys]
    (execution,) = executions(seeded)
    sent = json.loads(event(f"transfer_style/{name}.json")["body"])
    job = json.loads(seeded.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"])
    assert (job["styleKey"], job["blendKeys"]) == (style_keys[0], style_keys[1:])
    assert job["options"].get("styleBlend") == sent.get("options", {}).get("styleBlend")
    copies = [key for key in style_keys if not key.startswith("styles/")]
    for key in copies:  # exactly the upload that was checked, under the job's own key
        assert seeded.client("s3").get_object(Bucket=bucket(seeded), Key=key)["Body"].read() == jpeg()
    area = "private" if private else "public"
    assert sorted(keys_under(seeded, f"{area}/")) == sorted([f"{area}/input/{job_id}.png", *copies])

    item = jobs_table(seeded, monkeypatch).get(job_id)
    assert item["style"] == blend[0]["style"]  # the first painting names the job where one name is shown
    assert item["blend"] == blend
    assert item["blendKeys"] == style_keys[1:]


def test_each_request_is_its_own_job(seeded: LocalAws):
    first = answer(seeded.invoke(FUNCTION, "transfer_style/valid_data_url.json"))[1]
    second = answer(seeded.invoke(FUNCTION, "transfer_style/valid_data_url.json"))[1]
    assert first["jobId"] != second["jobId"]
    assert first["jobToken"] != second["jobToken"]
    assert len(executions(seeded)) == 2
    assert len(job_items(seeded)) == 2


def test_a_refusal_is_counted(seeded: LocalAws, capsys: pytest.CaptureFixture[str]):
    refusal(seeded.invoke(FUNCTION, "transfer_style/unknown_style.json"))
    assert any('"TransferRefused"' in line for line in capsys.readouterr().out.splitlines())


def test_a_failed_start_marks_the_job_failed_and_tells_the_client(seeded: LocalAws, monkeypatch: pytest.MonkeyPatch):
    # Step Functions refuses the StartExecution (as it does for a state machine that is gone)
    def refuse(**_: object) -> None:
        raise ClientError({"Error": {"Code": "StateMachineDoesNotExist", "Message": "gone"}}, "StartExecution")

    handler = seeded.handler(FUNCTION)
    monkeypatch.setattr(sys.modules[handler.__module__].states, "start_execution", refuse)
    text = refusal(seeded.invoke(FUNCTION, "transfer_style/valid_data_url.json"))
    assert text == "the service could not start the job; please try again"
    assert executions(seeded) == []
    (job,) = job_items(seeded)
    assert job["status"] == {"S": "FAILED"}
    assert job["error"] == {"S": "the service could not start the job"}


def test_a_job_that_cannot_start_gives_back_its_place_and_its_counts(seeded: LocalAws, monkeypatch):
    def refuse(**_: object) -> None:
        raise ClientError({"Error": {"Code": "StateMachineDoesNotExist", "Message": "gone"}}, "StartExecution")

    handler = seeded.handler(FUNCTION)
    monkeypatch.setattr(sys.modules[handler.__module__].states, "start_execution", refuse)
    assert refusal(seeded.invoke(FUNCTION, "transfer_style/valid_data_url.json")).startswith(
        "the service could not start the job"
    )
    items = seeded.client("dynamodb").scan(TableName="RateLimitsTable")["Items"]
    assert {item["id"]["S"].split("#")[0]: item["count"]["N"] for item in items if "count" in item} == {
        "active": "0", "connection": "0", "address": "0"}  # fmt: skip
    assert not [item for item in items if "count" not in item]  # no ticket left behind


def test_an_image_posted_with_request_upload_can_be_styled(seeded: LocalAws):
    """The whole upload path for real: REQUEST_UPLOAD, a browser-like multipart POST of the file
    to the presigned URL with its fields, then TRANSFER_STYLE naming the key."""
    _, ready = answer(seeded.invoke("RequestUploadFunction", "request_upload/png.json"))
    posted = requests.post(
        ready["url"], data=ready["fields"], files={"file": ("photo.png", PNG, "image/png")}, timeout=10
    )
    assert posted.status_code in (200, 201, 204), posted.text
    event_name, accepted = answer(
        seeded.invoke(FUNCTION, with_body("transfer_style/upload_image.json", image=ready["key"]))
    )
    assert event_name == "TRANSFER_STYLE_ACCEPTED", accepted
    input_key = f"public/input/{accepted['jobId']}.png"
    stored = seeded.client("s3").get_object(Bucket=bucket(seeded), Key=input_key)
    assert stored["Body"].read() == PNG
    assert stored["ContentType"] == "image/png"
    (execution,) = executions(seeded)
    described = seeded.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["inputKey"] == input_key


def test_an_upload_is_judged_by_its_bytes_not_its_name_or_header(seeded: LocalAws):
    # a JPEG posted under a .png key with a PNG Content-Type is stored as what it is
    s3 = seeded.client("s3")
    s3.put_object(Bucket=bucket(seeded), Key=UPLOAD_PNG, Body=jpeg(), ContentType="image/png")
    _, accepted = answer(seeded.invoke(FUNCTION, "transfer_style/upload_image.json"))
    stored = s3.get_object(Bucket=bucket(seeded), Key=f"public/input/{accepted['jobId']}.jpg")
    assert stored["ContentType"] == "image/jpeg"
    assert stored["Body"].read() == jpeg()


def test_an_upload_over_the_size_limit_is_refused(seeded: LocalAws):
    # S3 (and the local bucket, stylelocal.s3_auth) enforces the POST policy's content-length-range,
    # but an upload key could come from an older policy, so the function checks the size too. The limit (the template's
    # MaxUploadBytes, 20 MiB by default) is lowered here to keep the object small.
    seeded.overrides["MAX_UPLOAD_BYTES"] = "1024"
    seeded.client("s3").put_object(Bucket=bucket(seeded), Key=UPLOAD_PNG, Body=PNG + bytes(2048))
    text = refusal(seeded.invoke(FUNCTION, "transfer_style/upload_image.json"))
    assert text == f"image: the upload is {len(PNG) + 2048} bytes, over the limit of 1024"
    assert_nothing_started(seeded)


def data_url_of(data: bytes, content_type: str) -> str:
    import base64

    return f"data:{content_type};base64," + base64.b64encode(data).decode()


BROKEN = {
    "truncated PNG": (lambda: PNG[: len(PNG) // 2], "image/png", "the content image is damaged or truncated"),
    "truncated JPEG": (lambda: jpeg()[: len(jpeg()) // 2], "image/jpeg", "the content image is damaged or truncated"),
    "PNG body of noise": (lambda: PNG[:33] + bytes(range(256)) * 4, "image/png", "the content image is "),
    "JPEG header only": (lambda: jpeg()[:20], "image/jpeg", "the content image"),
    "WebP header only": (lambda: WEBP[:16], "image/webp", "the content image"),
    "60 megapixels": (lambda: png_claiming(10_000, 6_000), "image/png",
                      "the content image is 10000x6000 pixels, more than the 50 megapixels accepted"),
    "a bomb": (lambda: png_claiming(20_000, 20_000), "image/png", "the content image is"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_an_image_the_worker_would_refuse_starts_nothing(seeded: LocalAws, case: str):
    """Issue 12: a valid header on a broken body used to start a GPU job that then failed."""
    make, content_type, text = BROKEN[case]
    body = with_body("transfer_style/valid_data_url.json", image=data_url_of(make(), content_type))
    assert text in refusal(seeded.invoke(FUNCTION, body))
    assert_nothing_started(seeded)


def test_an_uploaded_style_is_pinned_to_the_version_that_was_checked(seeded: LocalAws):
    """The upload's presigned POST is still valid after ACCEPTED: the job must not read uploads/,
    where a client could put anything once the style passed its checks."""
    s3 = seeded.client("s3")
    _, accepted = answer(seeded.invoke(FUNCTION, "transfer_style/upload_style.json"))
    copy = f"private/style/{accepted['jobId']}.jpg"
    s3.put_object(Bucket=bucket(seeded), Key=UPLOAD_STYLE, Body=b"<html>swapped after ACCEPTED</html>")
    assert s3.get_object(Bucket=bucket(seeded), Key=copy)["Body"].read() == jpeg()  # the job's is the checked one
    assert s3.head_object(Bucket=bucket(seeded), Key=copy)["ContentType"] == "image/jpeg"
    (execution,) = executions(seeded)
    described = seeded.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["styleKey"] == copy


@pytest.fixture
def copy_if_match() -> Iterator[None]:
    """moto copies whatever the source holds, whatever CopySourceIfMatch says; the local stack's
    fix makes it refuse a changed source as S3 does (stylelocal.moto_fixes)."""
    installed = moto_fixes.install(["s3_copy_if_match"])
    yield
    moto_fixes.uninstall(installed)


@pytest.mark.usefixtures("copy_if_match")
def test_a_style_upload_swapped_between_its_check_and_its_copy_starts_nothing(
    seeded: LocalAws, monkeypatch: pytest.MonkeyPatch
):
    """The copy names the ETag that was checked (CopySourceIfMatch), which S3 refuses once the
    upload changed: the race after the check, made to happen here."""
    handler = seeded.handler(FUNCTION)
    module = sys.modules[handler.__module__]
    real_copy = module.s3.copy_object

    def swap_then_copy(**request: Any) -> Any:
        source = request["CopySource"]
        module.s3.put_object(Bucket=source["Bucket"], Key=source["Key"], Body=b"<html>swapped</html>")
        return real_copy(**request)

    monkeypatch.setattr(module.s3, "copy_object", swap_then_copy)
    text = refusal(seeded.invoke(FUNCTION, "transfer_style/upload_style.json"))
    assert text == "style: the upload changed while it was checked; send the request again"
    assert_nothing_started(seeded)


def test_a_broken_upload_and_a_broken_style_upload_start_nothing(seeded: LocalAws):
    s3 = seeded.client("s3")
    s3.put_object(Bucket=bucket(seeded), Key=UPLOAD_PNG, Body=PNG[: len(PNG) // 2], ContentType="image/png")
    text = refusal(seeded.invoke(FUNCTION, "transfer_style/upload_image.json"))
    assert text.startswith("the content image is damaged or truncated")
    s3.put_object(Bucket=bucket(seeded), Key=UPLOAD_STYLE, Body=jpeg()[:200], ContentType="image/jpeg")
    text = refusal(seeded.invoke(FUNCTION, "transfer_style/upload_style.json"))
    assert text.startswith("the style image is damaged or truncated")
    assert_nothing_started(seeded)


# --- every number storable, every refusal without a trace -------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([1e-200, -1e-200, 5e-324, 1e-131, 1e-130, 0.49995, 0.99996, 1.00004, 2.00004, 0.25, 2**31, -0.0]),
)
OPTIONS = st.fixed_dictionaries({}, optional={name: NUMBERS for name in ("strength", "styleScale", "size", "seed")})


def footprint(aws: LocalAws) -> tuple[int, int, int, dict[str, str]]:
    """What a request can leave behind: stored images, job items, executions, counters."""
    items = aws.client("dynamodb").scan(TableName="RateLimitsTable")["Items"]
    counters = {item["id"]["S"]: item.get("count", {}).get("N", "ticket") for item in items}
    images = len(keys_under(aws, "public/")) + len(keys_under(aws, "private/"))
    return images, len(job_items(aws)), len(executions(aws)), counters


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=OPTIONS)
def test_an_accepted_job_stores_every_number_and_a_refused_one_leaves_nothing(seeded: LocalAws, options: dict):
    """`strength: 1e-200` once passed the 0..1 check and failed only when DynamoDB was asked to
    store it: after the photo was stored and both rate counters spent. Now each accepted number is
    one DynamoDB can store (the contract keeps 4 decimal places), and a refusal writes nothing."""
    before = footprint(seeded)
    request = with_body("transfer_style/valid_data_url.json", options=options)
    request["requestContext"]["connectionId"] = f"c{len(before[3])}="  # a fresh allowance each time

    name, data = answer(seeded.invoke(FUNCTION, request))

    if name == "TRANSFER_STYLE_ACCEPTED":
        [job] = [j for j in job_items(seeded) if j["jobId"]["S"] == data["jobId"]]
        stored = job["options"]["M"]
        for key in ("strength", "styleScale"):
            if key in options:
                assert float(stored[key]["N"]) == round(options[key], 4)
    else:
        assert name == "ERROR", data
        assert "Internal" not in data["message"]
        assert footprint(seeded) == before
