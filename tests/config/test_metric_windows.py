"""Conversion windows and retention in the metric YAML: window_start_days, include_maturing."""

from __future__ import annotations

import pytest
import yaml

from ab_pipelines.config import validate_registry
from ab_pipelines.config.models import Metric

RETAINED = {
    "id": "retained",
    "kind": "proportion",
    "event": "page_view",
    "agg": "any",
    "window_start_days": 7,
    "window_days": 1,
}


def _problems(tmp_path, metric: dict) -> list[str]:
    folder = tmp_path / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{metric['id']}.yaml").write_text(yaml.safe_dump(metric), encoding="utf-8")
    (tmp_path / "experiments").mkdir(exist_ok=True)
    return [str(p) for p in validate_registry(tmp_path, {})]


def test_a_retention_metric_is_valid(tmp_path):
    assert _problems(tmp_path, RETAINED) == []
    m = Metric.model_validate(RETAINED)
    assert (m.window_start_days, m.window_days, m.include_maturing) == (7, 1, False)
    assert m.maturity_days == 8
    assert Metric.model_validate({**RETAINED, "include_maturing": True}).maturity_days is None
    plain = Metric(id="c", kind="proportion", event="purchase")
    assert (plain.window_start_days, plain.include_maturing, plain.maturity_days) == (
        0,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"window_days": None}, "window_start_days", "window_start_days needs window_days"),
        (
            {"window_days": None, "window_start_days": 0, "include_maturing": True},
            "include_maturing",
            "include_maturing needs window_days",
        ),
        ({"window_start_days": -1}, "window_start_days", "greater than or equal to 0"),
        ({"window_days": 0}, "window_days", "greater than 0"),
        ({"window_days": -7, "window_start_days": 0}, "window_days", "greater than 0"),
    ],
)
def test_window_mistakes_name_the_file_and_field(tmp_path, change, field, reason):
    metric = {k: v for k, v in {**RETAINED, **change}.items() if v is not None}
    (problem,) = _problems(tmp_path, metric)
    assert problem.startswith(f"metrics/retained.yaml: field '{field}': ")
    assert reason in problem


def test_the_registry_metrics_with_windows(registry):
    """The repo's windowed metrics: a day-7 retention and a 7-day conversion; orders keeps its
    7-day window and now waits for it to end."""
    retained, conversion = registry.metrics["retained_d7"], registry.metrics["conversion_7d"]
    assert (retained.window_start_days, retained.window_days, retained.maturity_days) == (7, 1, 8)
    assert retained.event == "page_view" and retained.kind == "proportion"
    assert (conversion.window_start_days, conversion.maturity_days) == (0, 7)
    assert conversion.event == "purchase" and conversion.kind == "proportion"
    assert registry.metrics["orders"].maturity_days == 7
