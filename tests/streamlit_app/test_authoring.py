"""Drafting an experiment: validated with `abp validate`'s rules, written as a draft, never published."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from ab_pipelines.config import validate_registry
from ab_pipelines.config.models import Experiment
from streamlit_app.authoring import (
    DraftRefused,
    check_draft,
    draft_experiment,
    draft_yaml,
    write_draft,
)
from tests.streamlit_app.demo_data import copy_registry

START = dt.date(2026, 12, 1)


def draft(**kw):
    base = dict(
        id="banner_color",
        name="Banner colour",
        owner="ana@example.com",
        hypothesis="A green banner gets more clicks.",
        start_date=START,
        end_date=START + dt.timedelta(days=27),
        variants=[{"id": "control", "weight": 0.5}, {"id": "green", "weight": 0.5}],
        primary=["conversion"],
        secondary=["revenue"],
        guardrails=[{"metric": "page_load_ms", "max_relative_change": 0.05}],
        analysis={"alpha": 0.05, "sequential": True, "correction": "holm", "mde": None},
    )
    return draft_experiment(**{**base, **kw})


@pytest.fixture
def root(tmp_path):
    return copy_registry(tmp_path / "registry")


def test_a_draft_is_a_valid_experiment_in_the_registry_layout():
    d = draft()
    assert d["status"] == "draft" and "approvals" not in d
    assert d["allocation"] == 1.0 and "layer" not in d
    assert "mde" not in d["analysis"]  # empty options are left out
    text = draft_yaml(d)
    assert text.startswith("# Drafted in the dashboard.")
    assert "  - {id: control, weight: 0.5}" in text  # flow leaves, as in experiments/*.yaml
    assert "primary: [conversion]" in text
    loaded = yaml.safe_load(text)
    assert loaded == d
    exp = Experiment.model_validate(loaded)
    assert exp.baseline == "control" and exp.metrics.guardrails[0].max_relative_change == 0.05


def test_a_layer_replaces_the_allocation():
    d = draft(layer="checkout", layer_range=(0.5, 0.75), allocation=0.3)
    assert d["layer"] == "checkout" and d["layer_range"] == [0.5, 0.75]
    assert "allocation" not in d


def test_a_valid_draft_is_written_and_the_registry_still_validates(root):
    check = check_draft(draft(), root)
    assert check.ok and check.file == "experiments/banner_color.yaml"
    assert check.registry_problems == []
    path = write_draft(draft(), root)
    assert path == root / "experiments" / "banner_color.yaml"
    assert yaml.safe_load(path.read_text())["status"] == "draft"
    assert validate_registry(root) == []


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            {"variants": [{"id": "a", "weight": 0.6}, {"id": "b", "weight": 0.5}]},
            "variants",
            "weights sum to 1.1, not 1",
        ),
        ({"variants": [{"id": "a", "weight": 1.0}]}, "variants", "at least two variants"),
        ({"primary": ["no_such_metric"]}, "metrics.primary", "unknown metric 'no_such_metric'"),
        ({"end_date": START - dt.timedelta(days=1)}, "end_date", "is before start_date"),
        ({"layer": "checkout", "layer_range": (0.5, 0.5)}, "layer_range", "0 <= lo < hi <= 1"),
        ({"unit": "team_id"}, "unit", "unknown unit 'team_id'"),
    ],
)
def test_problems_name_the_drafts_file_and_field(root, change, field, reason):
    check = check_draft(draft(**change), root)
    assert not check.ok
    assert any(
        p.startswith(f"experiments/banner_color.yaml: field '{field}'") and reason in p
        for p in check.problems
    ), check.problems
    with pytest.raises(DraftRefused):
        write_draft(draft(**change), root)
    assert not (root / "experiments" / "banner_color.yaml").exists()


def test_an_id_must_be_new_and_a_plain_file_name(root):
    taken = check_draft(draft(id="checkout_cta"), root)
    assert not taken.ok and "is taken" in taken.problems[0]
    for bad in ("../escape", "a/b", "", ".hidden"):
        check = check_draft(draft(id=bad), root)
        assert not check.ok and "field 'id'" in check.problems[0]
    before = (root / "experiments" / "checkout_cta.yaml").read_text()
    with pytest.raises(DraftRefused):
        write_draft(draft(id="checkout_cta"), root)
    assert (root / "experiments" / "checkout_cta.yaml").read_text() == before


def test_the_registrys_own_problems_are_told_apart(root):
    broken = root / "experiments" / "homepage_aa.yaml"
    broken.write_text(broken.read_text().replace("weight: 0.5}", "weight: 0.4}", 1))
    check = check_draft(draft(), root)
    assert check.ok  # the draft itself is fine and may be written
    assert any(p.startswith("experiments/homepage_aa.yaml") for p in check.registry_problems)


def test_a_draft_is_checked_against_the_published_state(root):
    # a published running experiment whose file is gone: validate says so, not about the draft
    state = {"experiments": {"old_exp": {"status": "running"}}}
    check = check_draft(draft(), root, state)
    assert check.ok and any("old_exp" in p for p in check.registry_problems)


def test_only_drafts_are_written(root):
    d = {**draft(), "status": "running"}
    with pytest.raises(DraftRefused, match="starts as draft"):
        write_draft(d, root)
