"""The S3 key layout, and the only way keys are made from client input.

styles/<name>.jpg                         the style catalogue (public through CloudFront)
styles/catalogue.json                     its titles, artists and years (catalogue/catalogue.json)
uploads/<32 hex>.<jpg|png|webp>           presigned-POST uploads (expire after a day if unused)
public/input/<jobId>.<ext>                content images of public jobs (public)
public/style/<jobId>.<ext>                their own style image, if uploaded: the checked copy (a day);
public/style/<jobId>-<n>.<ext>            in a blend, the n-th style (1 or 2) when it is an upload
public/output/<jobId>.jpg                 their results (public)
public/preview/<jobId>.jpg                their instant previews (public, never listed)
private/input/<jobId>.<ext>               private jobs: reachable only through presigned URLs
private/style/<jobId>.<ext>
private/output/<jobId>.jpg
private/preview/<jobId>.jpg
"""

from __future__ import annotations

import re
import uuid

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# \Z, not $: Python's $ also matches before a final newline, so "uploads/<hex>.png\n" would pass
STYLE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")
UPLOAD_KEY = re.compile(r"^uploads/[0-9a-f]{32}\.(jpg|png|webp)\Z")
JOB_ID = re.compile(r"^[0-9a-f]{32}\Z")
STYLE_KEY = re.compile(r"^styles/([a-z0-9][a-z0-9-]{0,39})\.jpg\Z")
# a job's own objects: <area>/<what>/<jobId>.<ext>; (area, what, jobId, extension). A blend's
# second and third uploaded styles are <area>/style/<jobId>-<n>.<ext> (n = their place, 1 or 2).
JOB_OBJECT = re.compile(r"^(public|private)/(input|style|output|preview)/([0-9a-f]{32})\.(jpg|png|webp)\Z")
OWN_STYLE = re.compile(r"^(public|private)/style/([0-9a-f]{32})(?:-([12]))?\.(jpg|png|webp)\Z")
MAX_STYLES = 3  # a blend: at most this many style images in one job


def new_job_id() -> str:
    return uuid.uuid4().hex


def style_key(name: str) -> str:
    if not STYLE_NAME.match(name):
        raise ValueError(f"not a style name: {name!r}")
    return f"styles/{name}.jpg"


CATALOGUE_KEY = "styles/catalogue.json"


def style_name(key: str) -> str | None:
    """The catalogue name of a `styles/<name>.jpg` key, or None for any other key."""
    match = STYLE_KEY.match(key)
    return match.group(1) if match else None


def upload_key(content_type: str) -> str:
    return f"uploads/{uuid.uuid4().hex}.{EXTENSIONS[content_type]}"


def is_upload_key(key: str) -> bool:
    """True only for keys this service hands out: no prefixes, no '..', no other folders."""
    return bool(UPLOAD_KEY.match(key))


def is_catalogue_key(key: str) -> bool:
    return bool(STYLE_KEY.match(key))


def job_object(key: str) -> tuple[bool, str, str, str] | None:
    """(private, what, jobId, extension) of a job's own object (input, style, output, preview), else None."""
    match = JOB_OBJECT.match(key)
    return (match.group(1) == "private", match.group(2), match.group(3), match.group(4)) if match else None


def _area(private: bool) -> str:
    return "private" if private else "public"


def input_key(job_id: str, private: bool, extension: str) -> str:
    return f"{_area(private)}/input/{job_id}.{extension}"


def own_style_key(job_id: str, private: bool, extension: str, place: int = 0) -> str:
    """A job's copy of a style image its client uploaded: exactly the version that was checked,
    where the upload's presigned POST (still valid for a while) cannot replace it. `place` is the
    style's place in a blend (0 for the first, or only, style; 1 or 2 for the others)."""
    if not 0 <= place < MAX_STYLES:
        raise ValueError(f"a job has at most {MAX_STYLES} styles, not a style at place {place}")
    return f"{_area(private)}/style/{job_id}{f'-{place}' if place else ''}.{extension}"


def own_style(key: str) -> tuple[bool, str, int] | None:
    """(private, jobId, place in the blend) of a job's own style copy, else None."""
    match = OWN_STYLE.match(key)
    return (match.group(1) == "private", match.group(2), int(match.group(3) or 0)) if match else None


def own_style_keys(job_id: str, private: bool) -> list[str]:
    """Every key a job's own style copies can have (each place, each extension): what deleting a
    job removes, whether or not it had such a copy."""
    return [own_style_key(job_id, private, extension, place)
            for place in range(MAX_STYLES) for extension in EXTENSIONS.values()]  # fmt: skip


def output_key(job_id: str, private: bool) -> str:
    return f"{_area(private)}/output/{job_id}.jpg"


def preview_key(job_id: str, private: bool) -> str:
    """The instant preview: in the job's own area, so it is exactly as private as the job."""
    return f"{_area(private)}/preview/{job_id}.jpg"
