"""GET_SERVICE against moto: the device the workers paint on (measured, else the template's
WORKER_DEVICE), the sizes that device is offered at and the pace its workers measured; and the
sizes' arithmetic (stylejob.sizes) held to the engine's, which it repeats without PyTorch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stylejob import sizes
from stylejob.job import PRESETS
from workerpool import IDLE, Registry, new_worker_id

from .local_aws import LocalAws
from .routes_support import answer, event_files, refusal

FUNCTION = "GetServiceFunction"


def service(aws: LocalAws) -> dict:
    event_name, data = answer(aws.invoke(FUNCTION, "get_service/service.json"))
    assert event_name == "SERVICE", data
    return data


def test_every_event_file_is_exercised():
    assert {path.split("/")[1] for path in event_files("get_service")} == {
        "service.json", "unknown_field.json", "bad_json.json",
    }  # fmt: skip


def test_before_any_worker_painted_the_templates_device_and_no_pace(aws: LocalAws):
    data = service(aws)
    assert data == {
        "device": "cuda",  # template.yaml: the workers run on GPU instances
        "deviceMeasured": False,
        "sizes": [
            {"size": 512, "preset": "standard", "iterations": 200, "scales": [256, 362, 512]},
            {"size": 1024, "preset": "standard", "iterations": 200, "scales": [512, 724, 1024]},
            {"size": 2048, "preset": "standard", "iterations": 200, "scales": [1024, 1448, 2048]},
        ],
        "defaultSize": 1024,
        "minSize": 64,
        "maxSize": 2048,
        "pace": None,  # nothing measured: no number pretends to know
        "startSeconds": None,
        "workersUp": 0,
        "waiting": 0,
    }


def test_a_stack_whose_workers_run_on_a_cpu_offers_the_cpus_sizes(aws: LocalAws):
    aws.overrides["WORKER_DEVICE"] = "cpu"  # what the local stack sets on a machine without a GPU
    data = service(aws)
    assert (data["device"], data["defaultSize"]) == ("cpu", 256)
    assert [(offer["size"], offer["preset"]) for offer in data["sizes"]] == [(256, "preview"), (512, "preview")]


def test_what_the_workers_measured_wins_over_the_configuration(aws: LocalAws):
    registry = Registry(aws.refs["WorkersTable"], aws.client("dynamodb"))
    registry.record_pace("cpu", start_seconds=9.5, now=1_800_000_000)
    data = service(aws)
    assert (data["device"], data["deviceMeasured"], data["pace"], data["startSeconds"]) == ("cpu", True, None, 9.5)

    registry.record_pace("cpu", seconds_per_megapixel_iteration=2.75, now=1_800_000_100)
    worker = new_worker_id()
    assert registry.reserve(worker, 1, 60)
    assert registry.renew(worker, IDLE, 60)
    data = service(aws)
    assert data["pace"] == {"secondsPerMegapixelIteration": 2.75, "measuredAt": 1_800_000_100_000}
    assert (data["startSeconds"], data["workersUp"]) == (9.5, 1)
    # what a page works out from it for a 4:3 photo at the default size: the pace times the work
    [offer] = [sizes.offer(o["size"], o["preset"]) for o in data["sizes"] if o["size"] == data["defaultSize"]]
    work = (128 * 96 + 181 * 136 + 256 * 192) * 60 / 1e6
    assert sizes.work(offer, 4000, 3000) == pytest.approx(work)
    assert sizes.estimate_seconds(offer, 4000, 3000, 2.75) == pytest.approx(2.75 * work)
    assert sizes.estimate_seconds(offer, 4000, 3000, 2.75, start_seconds=9.5) == pytest.approx(2.75 * work + 9.5)


@pytest.mark.parametrize(
    ("name", "text"), [("unknown_field", "unknown field device"), ("bad_json", "the message is not valid JSON")]
)
def test_refused_with_a_clear_message(aws: LocalAws, name: str, text: str):
    assert refusal(aws.invoke(FUNCTION, f"get_service/{name}.json")) == text


# --- the sizes' arithmetic, against the engine's ------------------------------------------------


def test_the_preset_shapes_are_the_engines():
    from styletransfer.options import PRESETS as ENGINE_PRESETS

    assert set(sizes.PRESET_SHAPES) == set(ENGINE_PRESETS) == set(PRESETS) - {"auto"}
    for name, shape in sizes.PRESET_SHAPES.items():
        engine = ENGINE_PRESETS[name]
        assert (shape.size, shape.scales, shape.iterations) == (engine.size, engine.scales, engine.iterations)
    for device in sizes.DEVICES:
        assert sizes.DEFAULT_SIZE[device] in sizes.SIZES[device]
        assert all(64 <= size <= 2048 for size in sizes.SIZES[device])


@settings(max_examples=200, deadline=None, database=None)
@given(size=st.integers(64, 2048), scales=st.integers(1, 8), width=st.integers(1, 9000), height=st.integers(1, 9000))
def test_scales_and_their_pixels_are_the_engines(size: int, scales: int, width: int, height: int):
    from styletransfer.images import fit_size
    from styletransfer.options import Options

    assert sizes.scale_sides(size, scales) == Options(size=size, scales=scales).scale_sizes()
    for side in sizes.scale_sides(size, scales):
        assert sizes.fit(width, height, side) == fit_size(width, height, side)
