"""The style catalogue of the local stack, stored where LIST_STYLES looks for it: the paintings of
the repository's catalogue/ (public-domain works, see catalogue/SOURCES.md) with their manifest
(styles/catalogue.json: title, artist, year), and after them the styles the project draws itself
(styletransfer.samples), whose licence is ours.

The deploy tooling uploads the same objects (styledeploy.site) from a light environment of its own
without PyTorch, so this module must not import it: styletransfer's __init__ imports the engine
and with it torch, so the drawn styles' painter, styletransfer/samples.py (numpy and Pillow only),
is loaded from its file without its package (`_samples`)."""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image
from stylejob import keys

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "catalogue"  # the same files the deployment uploads
SAMPLES = ROOT / "agent" / "styletransfer" / "samples.py"
MANIFEST = CATALOGUE / "catalogue.json"
MANIFEST_KEY = keys.CATALOGUE_KEY
STYLE_CACHE = "public, max-age=86400"
MANIFEST_CACHE = "no-cache"  # it changes with the catalogue
SIZE = 512  # px a side: the `standard` preset's size, and styleScale 1 matches a 512 px result
JPEG_QUALITY = 92


@cache
def _samples() -> ModuleType:
    """styletransfer/samples.py as a module of its own, without importing the styletransfer package
    (whose __init__ imports PyTorch: see the module's docstring)."""
    spec = importlib.util.spec_from_file_location("stylelocal._samples", SAMPLES)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SAMPLES}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _painter(name: str) -> Callable[[int], Image.Image]:
    return lambda size: getattr(_samples(), name)(size)


# catalogue name (^[a-z0-9][a-z0-9-]*$) -> painter (styletransfer.samples' function of that name)
STYLES: dict[str, Callable[[int], Image.Image]] = {
    "swirls": _painter("swirls"),
    "stained-glass": _painter("stained_glass"),
    "mosaic": _painter("mosaic"),
    "waves": _painter("waves"),
}


style_key = keys.style_key  # the catalogue's keys are the contract's (stylejob.keys)


def jpeg(image: Image.Image) -> bytes:
    encoded = io.BytesIO()
    image.convert("RGB").save(encoded, format="JPEG", quality=JPEG_QUALITY)
    return encoded.getvalue()


def paintings() -> list[dict[str, Any]]:
    """The manifest's entries: name, file, title, artist, artistDied, year."""
    return json.loads(MANIFEST.read_text())["styles"]


@dataclass(frozen=True)
class StyleObject:
    """One object of the catalogue as it lies in the bucket; `body` is made when called."""

    key: str
    body: Callable[[], bytes]
    content_type: str
    name: str | None  # the style's name; None for the manifest
    cache_control: str = STYLE_CACHE


def objects(styles: dict[str, Callable[[int], Image.Image]] | None = None) -> list[StyleObject]:
    """Everything the catalogue puts in the bucket, in the order the page lists it: the paintings
    of catalogue/, the drawn styles, then the manifest (styles/catalogue.json). The local stack
    seeds these; a deploy script uploads the same."""
    found = [
        StyleObject(style_key(entry["name"]), (CATALOGUE / entry["file"]).read_bytes, "image/jpeg", entry["name"])
        for entry in paintings()
    ]
    for name, paint in (styles if styles is not None else STYLES).items():
        found.append(StyleObject(style_key(name), lambda paint=paint: jpeg(paint(SIZE)), "image/jpeg", name))
    found.append(StyleObject(MANIFEST_KEY, MANIFEST.read_bytes, "application/json", None, MANIFEST_CACHE))
    return found


def seed_styles(aws: Any, styles: dict[str, Callable[[int], Image.Image]] | None = None) -> list[str]:
    """Writes styles/<name>.jpg into the images bucket for each painting of catalogue/ and each
    drawn style that is not there yet, and returns the names it wrote; the manifest is written
    every time (it describes the repository's files). A style already in the bucket (restored from
    a snapshot, or replaced by the user) is left as it is."""
    s3 = aws.client("s3")
    bucket = aws.refs["ImagesBucket"]
    present = {
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="styles/")
        for item in page.get("Contents", [])
    }
    written = []
    for style in objects(styles):
        if style.name is not None and style.key in present:
            continue
        s3.put_object(
            Bucket=bucket, Key=style.key, Body=style.body(), ContentType=style.content_type,
            CacheControl=style.cache_control,
        )  # fmt: skip
        if style.name is not None:
            written.append(style.name)
    return written
