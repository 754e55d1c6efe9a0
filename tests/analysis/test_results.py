"""Results, SRM, health and decisions from sufficient statistics (numpy only, no Spark)."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps

from ab_pipelines.analysis.results import (
    decide,
    experiment_results,
    health_rows,
    srm_flagged,
    srm_rows,
)
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.lake.tables import GOLD_EXPERIMENT_RESULTS, GOLD_SUFFICIENT_STATS
from ab_pipelines.stats import DEFAULT_SEQUENTIAL_TUNING, RatioMoments, adjust_pvalues, compare

DAY = dt.date(2026, 3, 10)
METRICS = {
    "revenue": Metric(id="revenue", kind="mean", event="purchase", agg="sum"),
    "conversion": Metric(id="conversion", kind="proportion", event="purchase", agg="any"),
    "page_load_ms": Metric(
        id="page_load_ms",
        kind="ratio",
        numerator={"event": "page_view", "agg": "sum"},
        denominator={"event": "page_view", "agg": "count"},
        higher_is_better=False,
    ),
}


def experiment(**kw) -> Experiment:
    base = dict(
        id="exp",
        name="Exp",
        owner="a@example.com",
        status="running",
        start_date=dt.date(2026, 3, 1),
        end_date=dt.date(2026, 3, 30),
        variants=[{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
        metrics={
            "primary": ["revenue"],
            "secondary": ["conversion"],
            "guardrails": [{"metric": "page_load_ms", "max_relative_change": 0.05}],
        },
    )
    return Experiment(**{**base, **kw})


def arm_values(rng, n, lift=0.0, load_lift=0.0, conv=0.1, pre_shift=0.0):
    """Per-unit (num, den, pre_num, pre_den) for the three metrics of one arm."""
    pre = rng.gamma(2.0, 5.0, n) + pre_shift
    revenue = np.maximum(0.0, 0.6 * pre + rng.normal(0, 4, n)) * (1 + lift)
    converted = (rng.random(n) < conv * (1 + lift)).astype(float)
    pre_conv = (rng.random(n) < conv).astype(float)
    views = rng.poisson(5, n) + 1.0
    load = views * rng.gamma(4.0, 200.0, n) * (1 + load_lift)
    pre_views = rng.poisson(5, n) + 1.0
    pre_load = pre_views * rng.gamma(4.0, 200.0, n)
    ones = np.ones(n)
    return {
        "revenue": (revenue, ones, pre, ones),
        "conversion": (converted, ones, pre_conv, ones),
        "page_load_ms": (load, views, pre_load, pre_views),
    }


def stats_table(arms: dict[str, dict], segment="all", exp_id="exp", day=DAY) -> pa.Table:
    """gold.sufficient_stats rows from per-unit values: variant -> metric -> (num, den, pre...)."""
    rows = []
    for variant, metrics in arms.items():
        for metric, (num, den, pre_num, pre_den) in metrics.items():
            m = RatioMoments.from_values(num, den, pre_num, pre_den)
            rows.append(
                {
                    **m.__dict__,
                    "experiment_id": exp_id,
                    "metric": metric,
                    "variant": variant,
                    "segment": segment,
                    "day": day,
                }
            )
    return pa.Table.from_pylist(rows, schema=GOLD_SUFFICIENT_STATS.schema)


def by(table: pa.Table, **match) -> dict:
    (row,) = [r for r in table.to_pylist() if all(r[k] == v for k, v in match.items())]
    return row


def no_nan(table: pa.Table) -> bool:
    return all(
        not (isinstance(v, float) and not math.isfinite(v))
        for r in table.to_pylist()
        for v in r.values()
    )


def test_results_match_scipy_and_the_statistics_library():
    rng = np.random.default_rng(1)
    a, b = arm_values(rng, 4000), arm_values(rng, 4100, lift=0.05)
    exp = experiment()
    t = experiment_results(exp, METRICS, DAY, stats_table({"control": a, "treatment": b}), False)
    assert t.schema == GOLD_EXPERIMENT_RESULTS.schema and t.num_rows == 3 and no_nan(t)
    rev = by(t, metric="revenue")
    # fixed horizon, raw: Welch on the raw arrays
    ya, yb = a["revenue"][0], b["revenue"][0]
    welch = sps.ttest_ind(yb, ya, equal_var=False)
    assert rev["abs_effect"] == pytest.approx(yb.mean() - ya.mean(), rel=1e-12)
    assert rev["abs_p_value"] == pytest.approx(welch.pvalue, rel=1e-8)
    assert (rev["n_baseline"], rev["n_variant"]) == (4000, 4100)
    # CUPED and the always-valid interval on the CUPED estimate
    ma = RatioMoments.from_values(*a["revenue"])
    mb = RatioMoments.from_values(*b["revenue"])
    from ab_pipelines.analysis.results import gold_moments as _moments

    ra = _moments([{**ma.__dict__}], ratio=False)
    rb = _moments([{**mb.__dict__}], ratio=False)
    cup = compare(ra, rb, relative=True, cuped=True)
    seq = compare(ra, rb, relative=True, cuped=True, sequential_tuning=DEFAULT_SEQUENTIAL_TUNING)
    assert rev["cuped_theta"] == pytest.approx(float(cup.theta[0]), rel=1e-12)
    assert rev["cuped_rel_effect"] == pytest.approx(float(cup.effect[0]), rel=1e-12)
    assert rev["seq_rel_ci_low"] == pytest.approx(float(seq.ci_low[0]), rel=1e-12)
    assert 0.2 < rev["cuped_variance_reduction"] < 0.9
    # ratio metric: delta method against the library's scalar path
    load = by(t, metric="page_load_ms")
    r = compare(
        RatioMoments.from_values(*a["page_load_ms"][:2]),
        RatioMoments.from_values(*b["page_load_ms"][:2]),
    )
    assert load["rel_effect"] == pytest.approx(r.effect, rel=1e-12)
    assert load["role"] == "guardrail" and load["guardrail_margin"] == 0.05
    assert load["p_value_adjusted"] is None  # guardrails are outside the family
    # Holm over primary + secondary, on the always-valid relative p-values
    fam = [by(t, metric="revenue"), by(t, metric="conversion")]
    adj = adjust_pvalues([r["seq_rel_p_value"] for r in fam], method="holm")
    assert [r["p_value_adjusted"] for r in fam] == pytest.approx(list(adj))


def test_fixed_horizon_experiments_decide_on_the_fixed_p_value():
    rng = np.random.default_rng(2)
    a, b = arm_values(rng, 3000), arm_values(rng, 3000, lift=0.03)
    exp = experiment(analysis={"sequential": False, "correction": "bh"})
    t = experiment_results(exp, METRICS, DAY, stats_table({"control": a, "treatment": b}), False)
    fam = [by(t, metric="revenue"), by(t, metric="conversion")]
    adj = adjust_pvalues([r["cuped_rel_p_value"] for r in fam], method="bh")
    assert [r["p_value_adjusted"] for r in fam] == pytest.approx(list(adj))


@pytest.mark.parametrize(
    ("kw", "flag", "expected"),
    [
        ({"lift": 0.15}, False, "ship"),
        ({"lift": -0.15}, False, "rollback"),
        ({"load_lift": 0.25}, False, "rollback"),  # guardrail breached
        ({}, False, "keep_running"),
        ({"lift": 0.15}, True, "invalid"),  # SRM beats everything
    ],
)
def test_decisions(kw, flag, expected):
    rng = np.random.default_rng(3)
    a, b = arm_values(rng, 5000), arm_values(rng, 5000, **kw)
    t = experiment_results(
        experiment(), METRICS, DAY, stats_table({"control": a, "treatment": b}), flag
    )
    assert set(t.column("decision").to_pylist()) == {expected}
    if "load_lift" in kw:
        assert by(t, metric="page_load_ms")["guardrail_breached"] is True


def test_an_ended_experiment_without_a_winner_is_inconclusive():
    rng = np.random.default_rng(4)
    a, b = arm_values(rng, 2000), arm_values(rng, 2000)
    stats = stats_table({"control": a, "treatment": b})
    past_end = experiment(end_date=DAY)
    assert experiment_results(past_end, METRICS, DAY, stats, False)["decision"][0].as_py() == (
        "inconclusive"
    )
    killed = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    t = experiment_results(experiment(), METRICS, DAY, stats, False, killed_at=killed)
    assert t["decision"][0].as_py() == "inconclusive"


def test_a_variant_without_units_gives_nulls_not_nan():
    rng = np.random.default_rng(5)
    a = arm_values(rng, 500)
    empty = {m: tuple(np.zeros(0) for _ in range(4)) for m in a}
    t = experiment_results(
        experiment(), METRICS, DAY, stats_table({"control": a, "treatment": empty}), False
    )
    assert no_nan(t)
    rev = by(t, metric="revenue")
    assert rev["n_variant"] == 0 and rev["abs_effect"] is None and rev["mean_variant"] is None
    assert rev["significant"] is False and rev["decision"] == "keep_running"
    # missing rows altogether count as n = 0 too
    t2 = experiment_results(experiment(), METRICS, DAY, stats_table({"control": a}), False)
    assert by(t2, metric="revenue")["n_variant"] == 0 and no_nan(t2)


def test_segment_rows_are_exploratory_and_never_decide():
    rng = np.random.default_rng(6)
    a, b = arm_values(rng, 3000), arm_values(rng, 3000)
    sa, sb = arm_values(rng, 3000), arm_values(rng, 3000, lift=0.5)
    stats = pa.concat_tables(
        [
            stats_table({"control": a, "treatment": b}),
            stats_table({"control": sa, "treatment": sb}, segment="platform=ios"),
        ]
    )
    t = experiment_results(experiment(), METRICS, DAY, stats, False)
    seg = by(t, metric="revenue", segment="platform=ios")
    assert seg["exploratory"] is True and seg["p_value_adjusted"] is None
    assert seg["seq_rel_effect"] > 0.3
    assert set(t.column("decision").to_pylist()) == {"keep_running"}
    assert t.column("segment").to_pylist()[:3] == ["all"] * 3  # "all" first


def test_srm_rows_flag_a_broken_split_per_segment():
    exp = experiment()
    t = srm_rows(
        exp,
        DAY,
        {
            "all": {"control": 1000, "treatment": 1200},
            "platform=ios": {"control": 500, "treatment": 505},
        },
    )
    rows = t.to_pylist()
    assert [(r["segment"], r["variant"], r["units"]) for r in rows] == [
        ("all", "control", 1000),
        ("all", "treatment", 1200),
        ("platform=ios", "control", 500),
        ("platform=ios", "treatment", 505),
    ]
    chi = sps.chisquare([1000, 1200])
    assert rows[0]["p_value"] == pytest.approx(chi.pvalue) and rows[0]["flagged"]
    assert not rows[2]["flagged"] and srm_flagged(t)
    # no units at all: no p-value (null), not flagged
    empty = srm_rows(exp, DAY, {"all": {}})
    assert empty["p_value"].to_pylist() == [None, None] and not srm_flagged(empty)


def test_health_flags_crossovers_empty_metrics_and_pre_period_imbalance():
    rng = np.random.default_rng(7)
    a, b = arm_values(rng, 3000), arm_values(rng, 3000, pre_shift=3.0)
    for arm in (a, b):  # conversion never happens: a metric without data
        arm["conversion"] = tuple(np.zeros(3000) for _ in range(4))
    stats = stats_table({"control": a, "treatment": b})
    t = health_rows(
        experiment(), METRICS, DAY, stats, {"control": 3000, "treatment": 3000}, crossovers=100
    )
    rows = {(r["check"], r["subject"]): r for r in t.to_pylist()}
    assert rows[("crossovers", "")]["flagged"] and rows[("crossovers", "")]["value"] == 100
    assert rows[("metric_without_data", "conversion")]["flagged"]
    assert not rows[("metric_without_data", "revenue")]["flagged"]
    assert rows[("pre_period_imbalance", "revenue/treatment")]["flagged"]
    assert not rows[("pre_period_imbalance", "page_load_ms/treatment")]["flagged"]
    welch = sps.ttest_ind(b["revenue"][2], a["revenue"][2], equal_var=False)
    assert rows[("pre_period_imbalance", "revenue/treatment")]["p_value"] == pytest.approx(
        welch.pvalue, rel=1e-6
    )
    ok = health_rows(experiment(), METRICS, DAY, stats, {"control": 3000, "treatment": 3000}, 3)
    assert not {(r["check"]) for r in ok.to_pylist() if r["flagged"]} & {"crossovers"}


def test_decide_needs_every_primary_to_win_for_ship():
    exp = experiment(metrics={"primary": ["revenue", "conversion"]})
    rows = [
        dict(
            segment="all",
            role="primary",
            variant="treatment",
            metric=m,
            significant=sig,
            _better=True,
            guardrail_breached=None,
        )
        for m, sig in (("revenue", True), ("conversion", False))
    ]
    assert decide(exp, rows, False, False) == "keep_running"
    rows[1]["significant"] = True
    assert decide(exp, rows, False, False) == "ship"


def test_results_rows_serialise_to_strict_json():
    rng = np.random.default_rng(8)
    a = arm_values(rng, 10)
    t = experiment_results(experiment(), METRICS, DAY, stats_table({"control": a}), False)
    json.dumps(t.to_pylist(), default=str, allow_nan=False)
