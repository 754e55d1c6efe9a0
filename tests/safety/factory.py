"""Builders for the safety tests: experiments, a registry, and gold/ops/silver rows of one day."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis.results import experiment_results, health_rows, srm_rows
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_SRM,
    OPS_DQ_RESULTS,
    OPS_KILLS,
    SILVER_EXPOSURE_COUNTS,
)
from tests.analysis.test_results import stats_table

DAY = dt.date(2026, 3, 10)
START = dt.date(2026, 3, 1)
METRICS = {
    "revenue": Metric(id="revenue", kind="mean", event="purchase", agg="sum"),
    "page_load_ms": Metric(
        id="page_load_ms",
        kind="ratio",
        numerator={"event": "page_view", "agg": "sum"},
        denominator={"event": "page_view", "agg": "count"},
        higher_is_better=False,
    ),
}


def experiment(id: str = "exp", **kw) -> Experiment:
    base = dict(
        id=id,
        name=id.title(),
        owner="a@example.com",
        status="running",
        start_date=START,
        end_date=dt.date(2026, 3, 30),
        variants=[{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
        metrics={
            "primary": ["revenue"],
            "guardrails": [{"metric": "page_load_ms", "max_relative_change": 0.05}],
        },
    )
    return Experiment(**{**base, **kw})


def registry(*experiments: Experiment) -> Registry:
    return Registry(experiments={e.id: e for e in experiments}, metrics=dict(METRICS))


def _arm(rng, n: int, load_lift: float) -> dict:
    pre = rng.gamma(2.0, 5.0, n)
    revenue = np.maximum(0.0, 0.6 * pre + rng.normal(0, 4, n))
    views = rng.poisson(5, n) + 1.0
    load = views * rng.gamma(4.0, 200.0, n) * (1 + load_lift)
    pre_views = rng.poisson(5, n) + 1.0
    pre_load = pre_views * rng.gamma(4.0, 200.0, n)
    ones = np.ones(n)
    return {
        "revenue": (revenue, ones, pre, ones),
        "page_load_ms": (load, views, pre_load, pre_views),
    }


def sufficient_stats(exp: Experiment, day: dt.date, load_lift: float, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    arms = {v: _arm(rng, 3000, lift) for v, lift in (("control", 0.0), ("treatment", load_lift))}
    return stats_table(arms, exp_id=exp.id, day=day)


def _replace_day(lake: Lake, spec, table: pa.Table, day: dt.date) -> None:
    lake.write_arrow(spec, table, replace=[{"day": day.isoformat()}])


def write_results(
    lake: Lake, exp: Experiment, day: dt.date, load_lift: float = 0.0, seed: int = 1
) -> pa.Table:
    """gold.experiment_results of one experiment and day; load_lift=0.3 breaches the guardrail."""
    stats = sufficient_stats(exp, day, load_lift, seed)
    t = experiment_results(exp, METRICS, day, stats, False)
    _replace_day(lake, GOLD_EXPERIMENT_RESULTS, t, day)
    return t


def write_srm(lake: Lake, exp: Experiment, day: dt.date, control: int, treatment: int) -> pa.Table:
    t = srm_rows(exp, day, {"all": {"control": control, "treatment": treatment}})
    _replace_day(lake, GOLD_SRM, t, day)
    return t


def write_health(lake: Lake, exp: Experiment, day: dt.date, crossovers: int) -> pa.Table:
    stats = sufficient_stats(exp, day, 0.0)
    t = health_rows(exp, METRICS, day, stats, {"control": 3000, "treatment": 3000}, crossovers)
    _replace_day(lake, GOLD_HEALTH, t, day)
    return t


def write_dq(lake: Lake, day: dt.date, failing: tuple[str, ...] = ()) -> None:
    checks = ("not_null", "unique_ids", "volume_band")
    rows = [
        {
            "table": "bronze.exposures",
            "check": c,
            "passed": c not in failing,
            "observed": '{"rows":1200,"median":5000}' if c in failing else '{"ok":true}',
            "sample": "[]",
            "description": f"the {c} check",
            "checked_at": dt.datetime(2026, 3, 11, 1, tzinfo=dt.UTC),
            "day": day,
        }
        for c in checks
    ]
    lake.merge_arrow(OPS_DQ_RESULTS, pa.Table.from_pylist(rows, schema=OPS_DQ_RESULTS.schema))


def write_exposures(lake: Lake, day: dt.date, counts: dict[str, int]) -> None:
    """silver.exposure_counts for event day ``day``, split over two arrival days and two variants."""
    rows = []
    for exp_id, n in counts.items():
        for variant in ("control", "treatment"):
            for arrival in (day, day + dt.timedelta(days=1)):
                rows.append(
                    {
                        "event_date": day,
                        "experiment_id": exp_id,
                        "variant": variant,
                        "exposures": n // 4,
                        "units": n // 4,
                        "arrival_date": arrival,
                    }
                )
    lake.write_arrow(
        SILVER_EXPOSURE_COUNTS, pa.Table.from_pylist(rows, schema=SILVER_EXPOSURE_COUNTS.schema)
    )


def write_kill(lake: Lake, exp_id: str, at: dt.datetime) -> None:
    row = {"experiment_id": exp_id, "killed_at": at, "by": "ops@example.com", "reason": "test"}
    lake.write_arrow(OPS_KILLS, pa.Table.from_pylist([row], schema=OPS_KILLS.schema))


def healthy_day(lake: Lake, exp: Experiment, day: dt.date) -> None:
    write_results(lake, exp, day)
    write_srm(lake, exp, day, 3000, 3010)
    write_health(lake, exp, day, crossovers=3)
    write_dq(lake, day)
    write_exposures(lake, day, {exp.id: 800})
