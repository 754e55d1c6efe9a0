"""Holdouts in the registry (issue 25, part 5): loading, validation, publishing, and the SDK
honouring a published one. Every test works on a registry copy: the repo's registry holds none."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ab_pipelines.assignment import Client, ListExposureSink
from ab_pipelines.assignment.signing import verify_envelope
from ab_pipelines.config import approve, load_registry, validate_registry
from ab_pipelines.config.publish import current_payload, kill, publish
from ab_pipelines.config.registry import RegistryError
from ab_pipelines.contracts.hashing import bucket

AT = dt.datetime(2026, 10, 30, 10, 0, tzinfo=dt.UTC)


def _holdout(root, hid="longterm", *, status="running", share=0.1, layers="[checkout]", extra=""):
    folder = root / "holdouts"
    folder.mkdir(exist_ok=True)
    path = folder / f"{hid}.yaml"
    path.write_text(
        f"id: {hid}\nname: Long-term holdout\nowner: ana@example.com\nstatus: {status}\n"
        f"share: {share}\nlayers: {layers}\nstart_date: 2026-11-01\n"
        f"metrics: {{primary: [conversion]}}\n{extra}"
    )
    if status in ("approved", "running", "stopped"):
        approve(path, "lee@example.com", AT)
    return path


def _problems(root) -> list[str]:
    return [str(p) for p in validate_registry(root, None)]


def test_a_registry_without_the_folder_has_no_holdouts(registry_copy):
    assert load_registry(registry_copy).holdouts == {}


def test_a_holdout_loads_with_its_salt_defaulting_to_the_id(registry_copy):
    _holdout(registry_copy)
    h = load_registry(registry_copy).holdouts["longterm"]
    assert h.share == 0.1 and h.layers == ["checkout"] and h.hash_salt == "longterm"
    assert _problems(registry_copy) == []


def test_the_analysis_sees_a_holdout_as_an_experiment_of_two_groups(registry_copy):
    _holdout(registry_copy)
    reg = load_registry(registry_copy)
    exp = reg.analysed_experiments["longterm"]
    assert "longterm" not in reg.experiments  # never published or killed as an experiment
    assert exp.variant_ids == ["holdout", "general"] and exp.baseline == "holdout"
    assert exp.metrics.primary == ["conversion"] and exp.start_date.isoformat() == "2026-11-01"
    assert reg.known_variants()["longterm"] == {"holdout", "general"}  # landing accepts them
    assert set(reg.analysed_experiments) == set(reg.experiments) | {"longterm"}


def test_a_holdout_id_that_is_an_experiment_id_is_refused(registry_copy):
    _holdout(registry_copy, "checkout_cta")
    assert any(
        "holdouts/checkout_cta.yaml" in p and "id" in p and "also an experiment" in p
        for p in _problems(registry_copy)
    )


@pytest.mark.parametrize("share", [0, 0.25, -0.1])
def test_a_share_out_of_range_is_a_problem_naming_file_and_field(registry_copy, share):
    _holdout(registry_copy, share=share)
    with pytest.raises(RegistryError) as err:
        load_registry(registry_copy)
    assert any(p.startswith("holdouts/longterm.yaml: field 'share'") for p in err.value.problems)


def test_an_unknown_layer_names_file_and_field(registry_copy):
    _holdout(registry_copy, layers="[checkout, serch]")
    problems = _problems(registry_copy)
    assert len(problems) == 1
    assert problems[0].startswith("holdouts/longterm.yaml: field 'layers': unknown layer 'serch'")


def test_two_running_holdouts_on_one_layer_are_refused(registry_copy):
    _holdout(registry_copy, "a_hold")
    _holdout(registry_copy, "b_hold")
    _holdout(registry_copy, "c_hold", status="draft")  # a draft holds nothing yet
    problems = _problems(registry_copy)
    assert problems == [
        "holdouts/b_hold.yaml: field 'layers': layer 'checkout' is already held by running "
        "holdout 'a_hold'"
    ]


def test_a_running_holdout_needs_an_approval_like_an_experiment(registry_copy):
    path = _holdout(registry_copy, status="draft")
    path.write_text(path.read_text().replace("status: draft", "status: running"))
    assert any(
        p.startswith("holdouts/longterm.yaml: field 'approvals'") for p in _problems(registry_copy)
    )


def test_an_unknown_metric_and_bad_dates_are_problems(registry_copy):
    _holdout(registry_copy, extra="end_date: 2026-10-01\n")
    path = registry_copy / "holdouts" / "longterm.yaml"
    path.write_text(path.read_text().replace("[conversion]", "[no_such_metric]"))
    approve(path, "lee@example.com", AT)
    fields = {p.split("field ")[1].split(":")[0] for p in _problems(registry_copy)}
    assert fields == {"'end_date'", "'metrics.primary'"}


def test_publish_compiles_running_holdouts_and_the_sdk_honours_them(home, registry_copy):
    publish(home, registry_copy)
    before = current_payload(home)
    assert "holdouts" not in before  # no holdout: the payload is what it always was
    _holdout(registry_copy, share=0.2)
    _holdout(registry_copy, "drafty", status="draft")
    result = publish(home, registry_copy)
    assert result.changed and result.version == 2
    payload = verify_envelope(json.loads((home.edge / "config.json").read_text()))
    assert payload["holdouts"] == {
        "longterm": {"salt": "longterm", "range": [0, 2000], "layers": ["checkout"]}
    }
    assert payload["content_sha"] != before["content_sha"]
    sink = ListExposureSink()
    client = Client.from_file(str(home.edge / "config.json"), exposure_sink=sink)
    held = [u for u in (f"u{i}" for i in range(3000)) if bucket("longterm", u) < 2000]
    free = [u for u in (f"u{i}" for i in range(3000)) if bucket("longterm", u) >= 2000]
    assert len(held) > 400
    for exp_id in ("checkout_cta", "checkout_layout"):  # the layer's experiments
        assert {client.assign(u, exp_id) for u in held} == {None}
        assert {client.assign(u, exp_id) for u in free} != {None}
    # no exposure of the experiments for a held-out unit; one of the holdout (rule 8b)
    logged = {e["unit"] for e in sink.events if e["experiment_id"] != "longterm"}
    assert logged and not logged & set(held)
    groups = {e["unit"]: e["variant"] for e in sink.events if e["experiment_id"] == "longterm"}
    assert {u for u, g in groups.items() if g == "holdout"} == set(held)
    # an experiment outside the layer is untouched
    assert any(client.assign(u, "homepage_aa") is not None for u in held)
    why = client.explain(held[0], "checkout_cta")
    assert why["decided_by"] == "holdout longterm" and why["held_out_by"] == "longterm"
    # a kill keeps the holdouts serving
    kill(home, "checkout_cta", "broken", "ops@example.com", registry_copy)
    assert current_payload(home)["holdouts"] == payload["holdouts"]
