"""tests/config/broken/: a registry of deliberately broken files, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ab_pipelines.config import RegistryError, load_registry, validate_registry

BROKEN = Path(__file__).parent / "broken"

# shipped_unknown is stopped; it was running when last published, so only its variant is wrong.
PUBLISHED = {
    "experiments": {"shipped_unknown": {"status": "running", "layer": None, "layer_range": None}}
}

EXPECTED = {
    ("experiments/bad_range.yaml", "layer_range"),
    ("experiments/device_unit.yaml", "unit"),
    ("experiments/early_end.yaml", "end_date"),
    ("experiments/extra_field.yaml", "colour"),
    ("experiments/guardrail.yaml", "metrics.guardrails"),
    ("experiments/lane_b.yaml", "layer_range"),
    ("experiments/layer_allocation.yaml", "allocation"),
    ("experiments/layer_alone.yaml", "layer_range"),
    ("experiments/lonely.yaml", "variants"),
    ("experiments/not_yaml.yaml", ""),
    ("experiments/override.yaml", "overrides"),
    ("experiments/self_approved.yaml", "approvals"),
    ("experiments/shipped_early.yaml", "shipped_variant"),
    ("experiments/shipped_unknown.yaml", "shipped_variant"),
    ("experiments/stale.yaml", "approvals"),
    ("experiments/twins.yaml", "variants"),
    ("experiments/two_problems.yaml", "end_date"),
    ("experiments/two_problems.yaml", "metrics.secondary"),
    ("experiments/unapproved.yaml", "approvals"),
    ("experiments/unknown_metric.yaml", "metrics.primary"),
    ("experiments/weights.yaml", "variants"),
    ("experiments/wrong_name.yaml", "id"),
    ("metrics/capped.yaml", "winsorize"),
    ("metrics/mean_any.yaml", "agg"),
    ("metrics/proportion_no_event.yaml", "event"),
    ("metrics/ratio_half.yaml", "denominator"),
    ("metrics/revenue.yml", "id"),
}

# Files that are valid on their own (lane_a is what lane_b overlaps).
VALID = {"experiments/lane_a.yaml", "metrics/conversion.yaml", "metrics/revenue.yaml"}


@pytest.fixture(scope="module")
def problems():
    return validate_registry(BROKEN, PUBLISHED)


def test_every_problem_is_reported_once(problems):
    pairs = [(p.file, p.field) for p in problems]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == EXPECTED


def test_every_broken_file_is_named():
    files = {p.relative_to(BROKEN).as_posix() for p in BROKEN.glob("*/*.y*ml")}
    assert len(files - VALID) >= 10
    assert {f for f, _ in EXPECTED} == files - VALID


def test_each_line_names_file_field_and_reason(problems):
    for p in problems:
        line = str(p)
        assert line.startswith(f"{p.file}: ")
        if p.field:
            assert f" field '{p.field}': " in line
        assert p.reason and line.endswith(p.reason)
        assert "\n" not in line


def test_some_exact_lines(problems):
    lines = {str(p) for p in problems}
    assert "experiments/weights.yaml: field 'variants': weights sum to 0.9, not 1" in lines
    assert (
        "experiments/stale.yaml: field 'approvals': "
        "approval is stale: content changed since lee@example.com approved it"
    ) in lines
    assert (
        "metrics/revenue.yml: field 'id': duplicate metric id 'revenue' (also in metrics/revenue.yaml)"
    ) in lines


def test_problems_are_grouped_by_file(problems):
    files = [p.file for p in problems]
    assert files == sorted(files)


def test_load_registry_raises_with_the_content_problems(problems):
    with pytest.raises(RegistryError) as info:
        load_registry(BROKEN)
    loaded = {(p.file, p.field) for p in info.value.details}
    # Everything but approvals (and the published state, which loading never sees).
    assert loaded == {pair for pair in EXPECTED if pair[1] != "approvals"}
    assert len(info.value.problems) == len(info.value.details)
