"""Quantile metrics in the metric YAML: kind quantile, quantile (the level ν) and level."""

from __future__ import annotations

import pytest
import yaml

from ab_pipelines.config import validate_registry
from ab_pipelines.config.models import Metric

P90 = {
    "id": "load_p90",
    "kind": "quantile",
    "event": "page_view",
    "quantile": 0.9,
    "level": "event",
    "higher_is_better": False,
}


def _problems(tmp_path, metric: dict) -> list[str]:
    folder = tmp_path / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{metric['id']}.yaml").write_text(yaml.safe_dump(metric), encoding="utf-8")
    (tmp_path / "experiments").mkdir(exist_ok=True)
    return [str(p) for p in validate_registry(tmp_path, {})]


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"level": "unit"},
        {"level": "unit", "agg": "sum", "where": {"page": "home"}},
        {"quantile": 0.5, "window_days": 7},  # windows follow the other kinds' rules
        {"quantile": 0.99, "window_start_days": 7, "window_days": 1, "include_maturing": True},
    ],
)
def test_a_quantile_metric_is_valid(tmp_path, change):
    metric = {**P90, **change}
    assert _problems(tmp_path, metric) == []
    m = Metric.model_validate(metric)
    assert m.kind == "quantile" and m.fixed_horizon_only
    assert (m.quantile, m.level) == (metric["quantile"], metric["level"])
    assert m.events() == {"page_view"}


def test_the_demo_metric(registry):
    """metrics/page_load_p90.yaml: the p90 of page-view load times, lower is better; no
    experiment of the repo reads it (adding it would change an approved file)."""
    m = registry.metrics["page_load_p90"]
    assert (m.kind, m.event, m.quantile, m.level, m.higher_is_better) == (
        "quantile",
        "page_view",
        0.9,
        "event",
        False,
    )
    assert all("page_load_p90" not in e.metric_ids() for e in registry.experiments.values())
    assert not registry.metrics["page_load_ms"].fixed_horizon_only


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"quantile": None}, "quantile", "a quantile metric needs its level in (0, 1)"),
        ({"quantile": 1.0}, "quantile", "less than 1"),
        ({"quantile": 0}, "quantile", "greater than 0"),
        ({"level": None}, "level", "a quantile metric needs level: event"),
        ({"level": "user"}, "level", "'event' or 'unit'"),
        ({"event": None}, "event", "a quantile metric needs the event it reads"),
        ({"agg": "count"}, "agg", "agg must be sum or absent, got count"),
        ({"winsorize": 0.99}, "winsorize", "a quantile metric is not winsorized"),
        ({"prior": {"mean": 0, "sd": 0.1}}, "prior", "no Bayesian posterior"),
        (
            {"numerator": {"event": "page_view", "agg": "sum"}},
            "numerator",
            "only a ratio metric has a numerator, this is a quantile",
        ),
        ({"window_start_days": 3}, "window_start_days", "needs window_days"),
    ],
)
def test_quantile_mistakes_name_the_file_and_field(tmp_path, change, field, reason):
    metric = {k: v for k, v in {**P90, **change}.items() if v is not None}
    (problem,) = _problems(tmp_path, metric)
    assert problem.startswith(f"metrics/load_p90.yaml: field '{field}': "), problem
    assert reason in problem, problem


@pytest.mark.parametrize("field", ["quantile", "level"])
def test_only_a_quantile_metric_has_a_quantile_or_a_level(tmp_path, field):
    metric = {"id": "revenue", "kind": "mean", "event": "purchase", "agg": "sum", field: P90[field]}
    (problem,) = _problems(tmp_path, metric)
    assert problem.startswith(f"metrics/revenue.yaml: field '{field}': "), problem
    assert f"only a quantile metric has a {field}, this is a mean" in problem
