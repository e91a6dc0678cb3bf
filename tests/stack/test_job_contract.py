"""The job contract's blend (stylejob): a job names up to three style images, each a catalogue
picture or the job's own pinned copy at its place, with one weight each; nothing else passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from stylejob import keys
from stylejob.job import Job, JobOptions

JOB_ID = "0123456789abcdef0123456789abcdef"
JOB_IDS = st.from_regex(r"\A[0-9a-f]{32}\Z")


def job(*, blend_keys: list[str], private: bool = False, job_id: str = JOB_ID, **options: object) -> Job:
    return Job.new(private=private, content_type="image/png", style_key="styles/udnie.jpg", job_id=job_id,
                   blend_keys=blend_keys, options=JobOptions.model_validate(options))  # fmt: skip


@given(
    job_id=JOB_IDS, private=st.booleans(), place=st.integers(0, 2), extension=st.sampled_from(["jpg", "png", "webp"])
)
def test_an_own_style_key_names_its_job_its_area_and_its_place(job_id: str, private: bool, place: int, extension: str):
    key = keys.own_style_key(job_id, private, extension, place)
    assert keys.own_style(key) == (private, job_id, place)
    assert key in keys.own_style_keys(job_id, private)
    assert (keys.job_object(key) is not None) == (place == 0)  # the first keeps the key it always had


@given(job_id=JOB_IDS, private=st.booleans())
def test_a_blend_of_the_jobs_own_copies_passes(job_id: str, private: bool):
    own = [keys.own_style_key(job_id, private, "jpg", place) for place in (1, 2)]
    blended = job(blend_keys=own, private=private, job_id=job_id, styleBlend=[0.2, 0.3, 0.5])
    assert blended.style_keys == ["styles/udnie.jpg", *own]


@pytest.mark.parametrize(
    ("blend_keys", "options", "why"),
    [
        ([keys.own_style_key("f" * 32, False, "jpg", 1)], {}, "blendKeys.0 must be a catalogue style"),  # another job's
        ([keys.own_style_key(JOB_ID, True, "jpg", 1)], {}, "blendKeys.0 must be"),  # the other area
        ([keys.own_style_key(JOB_ID, False, "jpg", 2)], {}, "blendKeys.0 must be"),  # the wrong place
        ([keys.own_style_key(JOB_ID, False, "jpg", 0)], {}, "blendKeys.0 must be"),  # the first's key
        (["uploads/" + "a" * 32 + ".jpg"], {}, "blendKeys.0 must be"),  # never an upload itself
        ([f"public/style/{JOB_ID}-3.jpg"], {}, "blendKeys.0 must be"),
        (["styles/a.jpg", "styles/b.jpg", "styles/c.jpg"], {}, "at most 2 items"),
        (["styles/a.jpg"], {"styleBlend": [1.0]}, "options.styleBlend has 1 weights for 2 styles"),
        (["styles/a.jpg"], {"styleBlend": [0.0, 0.0]}, "styleBlend needs a weight above 0"),
    ],
)
def test_anything_else_is_refused(blend_keys: list[str], options: dict, why: str):
    with pytest.raises(ValidationError, match=why.replace(".", r"\.").replace("[", r"\[")):
        job(blend_keys=blend_keys, **options)
