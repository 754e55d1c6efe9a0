"""Quantile metrics end to end: bronze -> gold.sufficient_stats (q_* columns) -> results -> faces.

A registry copy (the repo's metrics and experiments, plus three quantile metrics and one experiment
written here; no repo file changes) analyses a small lake through Sail, one engine session per
test process. The gold statistics are compared with ``quantile_summaries`` computed in numpy from
the same raw events, the results rows with ``compare_quantiles`` on those, and the faces (``abp
results`` text and JSON, the dashboard's scorecard rows) are read back.

The SQL's quantiles are exact (inverted-CDF ranks, dbt_like_sql/quantile_stats.sql), so Q̂, L
and U equal numpy's to the bit: the rank error is 0, inside any bound the sketch rule allows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner
from scipy import stats as sps

from ab_pipelines.analysis.day import results_day, stats_day
from ab_pipelines.analysis.decision import MetricVerdict, Scorecard, guardrail_check
from ab_pipelines.analysis.scorecard import read_scorecard, render, to_json
from ab_pipelines.analysis.sufficient_stats import experiment_stats
from ab_pipelines.cli import main
from ab_pipelines.config import load_registry
from ab_pipelines.config.models import Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SUFFICIENT_STATS,
    QUANTILE_FIELDS,
)
from ab_pipelines.settings import REPO_ROOT, paths
from ab_pipelines.stats import adjust_pvalues, compare_quantiles, quantile_summaries
from streamlit_app import data as dashboard

UTC = dt.UTC
START = dt.date(2026, 5, 4)  # before every repo experiment starts: only EXP is analysed
DAY = START + dt.timedelta(days=6)
EXP = "quantile_demo"
WINDOW = 3  # revenue_p75's window_days
VARIANTS = ("control", "treatment", "holdout")  # nobody is exposed to holdout: n = 0 rows
PLATFORMS = ("ios", "ios", "ios", "ios", "ios", "android", "android", "android", "web", "web")

# The repo's demo metric page_load_p90 (metrics/page_load_p90.yaml) and three written here.
EXTRA_METRICS = {
    "load_p50_home": {
        "kind": "quantile",
        "event": "page_view",
        "where": {"page": "home"},
        "quantile": 0.5,
        "level": "event",
        "higher_is_better": False,
    },
    "load_p99": {
        "kind": "quantile",
        "event": "page_view",
        "quantile": 0.99,
        "level": "event",
        "higher_is_better": False,
    },
    "revenue_p75": {  # a per-user quantile with a window: units still maturing are left out
        "kind": "quantile",
        "event": "purchase",
        "quantile": 0.75,
        "level": "unit",
        "window_days": WINDOW,
    },
}
EXPERIMENT = {
    "id": EXP,
    "name": "Quantiles",
    "owner": "a@example.com",
    "status": "running",
    "start_date": START,
    "variants": [
        {"id": "control", "weight": 0.45},
        {"id": "treatment", "weight": 0.45},
        {"id": "holdout", "weight": 0.1},
    ],
    "metrics": {
        "primary": ["page_load_p90"],
        "secondary": ["conversion", "load_p99", "revenue_p75"],
        "guardrails": [
            {"metric": "load_p50_home", "max_relative_change": 0.02},
            {"metric": "page_load_ms", "max_relative_change": 0.05},
        ],
    },
    "analysis": {
        "cuped_lookback_days": 2,
        "late_arrival_days": 1,
        "sequential": True,
        "segments": ["platform"],
        "segment_top_n": 2,
    },
}
QUANTILE_METRICS = ("page_load_p90", "load_p50_home", "load_p99", "revenue_p75")


def _t(day: dt.date, hours: float = 0.0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(hours=hours)


def _bronze(seed: int = 3) -> tuple[list[dict], list[dict]]:
    """600 users over 7 days: page views (load times rounded to 0.1 ms, so values tie; the
    treatment loads 15% faster) and purchases, before and after exposure, some arriving too late
    or happening after D + 1 day; one crossover."""
    rng = np.random.default_rng(seed)
    exposures, events = [], []

    def event(user, name, value, ts, props, arrival=None):
        events.append(
            {
                "event_id": f"e{len(events)}",
                "user_id": user,
                "event": name,
                "value": float(value),
                "ts": ts,
                "properties": json.dumps(props, sort_keys=True),
                "arrival_date": arrival or ts.date(),
            }
        )

    for i in range(600):
        user, variant = f"u{i:03d}", VARIANTS[i % 2]
        first = _t(START, float(rng.uniform(0, 24 * 7 - 1)))
        platform = PLATFORMS[i % len(PLATFORMS)]
        for k in range(int(rng.integers(1, 3))):
            exposures.append(
                {
                    "event_id": f"x{len(exposures)}",
                    "user_id": user,
                    "experiment_id": EXP,
                    "variant": variant,
                    "ts": first + dt.timedelta(hours=7 * k),
                    "attributes": json.dumps({"platform": platform}),
                    "arrival_date": (first + dt.timedelta(hours=7 * k)).date(),
                }
            )
        speed = float(rng.lognormal(np.log(700), 0.3)) * (0.85 if variant == "treatment" else 1)
        for _ in range(int(rng.poisson(5))):
            ts = first + dt.timedelta(hours=float(rng.uniform(-48, 24 * 5)))
            load = round(speed * float(rng.lognormal(0, 0.4)), 1)
            late = rng.random() < 0.05  # arrives two days later: after D + late_arrival_days
            arrival = ts.date() + dt.timedelta(days=2 if late else 0)
            page = "home" if rng.random() < 0.5 else "search"
            event(user, "page_view", load, ts, {"page": page}, arrival)
        for _ in range(int(rng.poisson(0.8))):
            ts = first + dt.timedelta(hours=float(rng.uniform(-24, 24 * 4)))
            event(user, "purchase", round(float(rng.gamma(2, 20)), 2), ts, {"currency": "USD"})
    exposures.append(dict(exposures[0], event_id="x-cross", user_id="u-cross"))
    exposures.append(dict(exposures[1], event_id="x-cross2", user_id="u-cross", variant="holdout"))
    event("u-cross", "page_view", 99999.0, exposures[0]["ts"], {"page": "home"})
    return exposures, events


def _reference(exposures: list[dict], events: list[dict], metrics: dict[str, Metric]) -> dict:
    """The statistics by the contract's rules, in numpy: (segment, metric, variant) -> the arm's
    QuantileMoments (``quantile_summaries``), and segment -> variant -> units."""
    day_end = _t(DAY + dt.timedelta(days=1))
    last_arrival = DAY + dt.timedelta(days=1)
    seen: dict[str, list[dict]] = {}
    for x in exposures:
        if _t(START) <= x["ts"] < day_end and x["arrival_date"] <= last_arrival:
            seen.setdefault(x["user_id"], []).append(x)
    units = {}
    for u, xs in seen.items():
        if len({x["variant"] for x in xs}) == 1:
            first = min(xs, key=lambda x: (x["ts"], x["event_id"]))
            units[u] = (first["ts"], first["variant"], json.loads(first["attributes"])["platform"])
    counts: dict[str, int] = {}
    for _, _, p in units.values():
        counts[p] = counts.get(p, 0) + 1
    top = sorted(counts, key=lambda p: (-counts[p], p))[:2]
    labels = {
        u: ["all", f"platform={p if p in top else 'other'}"] for u, (_, _, p) in units.items()
    }
    counted = [e for e in events if e["ts"] < day_end and e["arrival_date"] <= last_arrival]

    out = {}
    for mid in QUANTILE_METRICS:
        m = metrics[mid]
        per_unit: dict[str, list[float]] = {}
        for u, (first, _, _) in units.items():
            hi = day_end
            if m.window_days:
                hi = first + dt.timedelta(days=m.window_days)
                if hi > day_end:
                    continue  # maturing: not counted
            per_unit[u] = [
                e["value"]
                for e in counted
                if e["user_id"] == u
                and e["event"] == m.event
                and first <= e["ts"] < hi
                and all(json.loads(e["properties"]).get(k) == v for k, v in m.where.items())
            ]
        for segment in sorted({s for ls in labels.values() for s in ls}):
            for variant in VARIANTS:
                ids, values = [], []
                for u, vals in per_unit.items():
                    if units[u][1] != variant or segment not in labels[u]:
                        continue
                    if m.level == "unit":  # one value per unit, 0 without events
                        ids.append(u)
                        values.append(0.0)
                    ids += [u] * len(vals)
                    values += vals
                out[(segment, mid, variant)] = quantile_summaries(
                    np.array(ids, dtype=object), np.array(values), m.quantile, kind=m.level
                )
    unit_counts = {
        s: {v: sum(1 for u in units if units[u][1] == v and s in labels[u]) for v in VARIANTS}
        for s in {s for ls in labels.values() for s in ls}
    }
    return {"moments": out, "units": unit_counts}


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory):
    """A copy of the repo's registry plus the quantile metrics and the experiment of this test."""
    root = tmp_path_factory.mktemp("registry")
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    for mid, body in EXTRA_METRICS.items():
        text = yaml.safe_dump({"id": mid, **body}, sort_keys=False)
        (root / "metrics" / f"{mid}.yaml").write_text(text, encoding="utf-8")
    (root / "experiments" / f"{EXP}.yaml").write_text(
        yaml.safe_dump(EXPERIMENT, sort_keys=False), encoding="utf-8"
    )
    return root


@pytest.fixture(scope="module")
def quantile_registry(registry_root) -> Registry:
    return load_registry(registry_root)


@pytest.fixture(scope="module")
def analysed(spark, tmp_path_factory, quantile_registry):
    """The lake with bronze and day DAY analysed (the Spark step, then the numpy step)."""
    home = paths(tmp_path_factory.mktemp("quantile") / "abp")
    home.home.mkdir(parents=True)
    lake = Lake(home)
    exposures, events = _bronze()
    lake.write_arrow(
        BRONZE_EXPOSURES, pa.Table.from_pylist(exposures, schema=BRONZE_EXPOSURES.schema)
    )
    lake.write_arrow(
        BRONZE_METRIC_EVENTS, pa.Table.from_pylist(events, schema=BRONZE_METRIC_EVENTS.schema)
    )
    summary = stats_day(spark, lake, quantile_registry, DAY)
    results_day(lake, quantile_registry, DAY)
    return home, lake, summary, _reference(exposures, events, quantile_registry.metrics)


def _gold(lake: Lake, spec) -> list[dict]:
    return [r for r in lake.read_arrow(spec).to_pylist() if r["experiment_id"] == EXP]


def _same(got, want) -> bool:
    """Exactly equal, NaN (numpy's "no values") being a null in gold."""
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None
    return got == want


@pytest.mark.spark
def test_gold_quantile_statistics_equal_numpy_on_the_raw_events(analysed, quantile_registry):
    _, lake, _, want = analysed
    rows = {
        (r["segment"], r["metric"], r["variant"]): r for r in _gold(lake, GOLD_SUFFICIENT_STATS)
    }
    moments = want["moments"]
    assert {k for k in rows if k[1] in QUANTILE_METRICS} == set(moments)
    for key, m in moments.items():
        row = rows[key]
        for column, field in QUANTILE_FIELDS.items():
            expected = getattr(m, field)  # None for the per-unit sums at level unit
            assert _same(row[column], expected), (key, column, row[column], expected)
    # The other metrics' rows carry no quantile statistics.
    others = [r for k, r in rows.items() if k[1] not in QUANTILE_METRICS]
    assert others and all(r[c] is None for r in others for c in QUANTILE_FIELDS)
    # The data exercises ties, every level, an empty arm, and arms too small for p99's bounds.
    all_p90 = moments[("all", "page_load_p90", "control")]
    assert all_p90.n > 500 and all_p90.n_units > 200 and all_p90.n_star >= 400
    assert moments[("all", "page_load_p90", "holdout")].n == 0
    assert rows[("all", "page_load_p90", "holdout")]["q_value"] is None
    assert moments[("platform=other", "load_p99", "control")].n < 380
    assert moments[("all", "revenue_p75", "control")].n > 100  # units, zeros included


@pytest.mark.spark
def test_a_quantile_metric_row_keeps_the_companion_moments(analysed, quantile_registry):
    """n and maturing mean what they mean for every metric; the sums are those of the mean of
    the same values: page_load_p90's are page_load_ms's (a ratio), revenue_p75's a mean."""
    _, lake, summary, want = analysed
    rows = {
        (r["segment"], r["metric"], r["variant"]): r for r in _gold(lake, GOLD_SUFFICIENT_STATS)
    }
    for (segment, metric, variant), r in rows.items():
        if metric != "page_load_p90":
            continue
        ratio = rows[(segment, "page_load_ms", variant)]
        for f in ("n", "maturing", "num_sum", "num_sum_sq", "den_sum", "den_sum_sq", "pre_den_sum"):
            assert r[f] == pytest.approx(ratio[f], rel=1e-12), (segment, variant, f)
        if r["q_n"]:  # the values counted by the array are the events counted by the count side
            assert r["q_events_sum"] == r["den_sum"] == r["q_n"]
    for variant in ("control", "treatment"):
        r = rows[("all", "revenue_p75", variant)]
        assert (
            r["maturing"] > 10
            and r["n"] == r["q_n"] == want["moments"][("all", "revenue_p75", variant)].n
        )
        assert r["n"] + r["maturing"] == want["units"]["all"][variant]
        assert r["den_sum"] == r["n"]  # a mean: den = 1
    assert summary.rows[GOLD_SUFFICIENT_STATS.qualified] == len(rows)


@pytest.mark.spark
def test_results_rows_are_compare_quantiles_of_the_numpy_statistics(analysed, quantile_registry):
    _, lake, _, want = analysed
    moments = want["moments"]
    exp = quantile_registry.experiments[EXP]
    results = _gold(lake, GOLD_EXPERIMENT_RESULTS)
    checked = 0
    for r in results:
        for f, v in r.items():  # degenerate cases are nulls, never NaN
            assert not (isinstance(v, float) and not math.isfinite(v)), (r["metric"], f)
        m = quantile_registry.metrics[r["metric"]]
        assert r["metric_kind"] == m.kind
        if m.kind != "quantile":
            assert r["metric_quantile"] is None and r["metric_level"] is None
            continue
        assert (r["metric_quantile"], r["metric_level"]) == (m.quantile, m.level)
        a = moments[(r["segment"], r["metric"], "control")]
        b = moments[(r["segment"], r["metric"], r["variant"])]
        for prefix, relative in (("abs", False), ("rel", True)):
            c = compare_quantiles(a, b, relative=relative, alpha=exp.analysis.alpha)
            for k in ("effect", "ci_low", "ci_high", "p_value"):
                got, expected = r[f"{prefix}_{k}"], getattr(c, k)
                if math.isnan(expected):
                    assert got is None, (r["segment"], r["metric"], prefix, k)
                else:
                    assert got == pytest.approx(expected, rel=1e-9), (r["metric"], prefix, k)
        assert (r["n_baseline"], r["n_variant"]) == (int(a.units), int(b.units))
        assert _same(r["mean_baseline"], a.quantile) and _same(r["mean_variant"], b.quantile)
        fixed_horizon_only = [c for c in r if c.startswith(("seq_", "cuped_"))]
        assert all(r[c] is None for c in fixed_horizon_only), r["metric"]
        # the Bayesian engine's posterior of the relative difference of quantiles (flat prior:
        # N(effect, se^2), gbstats' EffectBayesianABTest on a quantile statistic)
        c = compare_quantiles(a, b, relative=True, alpha=exp.analysis.alpha)
        if math.isnan(c.effect):
            assert r["bayes_effect"] is None and r["bayes_chance_to_win"] is None
        else:
            sign = 1.0 if m.higher_is_better else -1.0
            win = sps.norm.cdf(sign * c.effect / c.se)
            assert r["bayes_effect"] == pytest.approx(c.effect, rel=1e-9)
            assert r["bayes_chance_to_win"] == pytest.approx(win, rel=1e-7, abs=1e-12)
            z = sps.norm.ppf(1 - exp.analysis.alpha / 2)
            assert r["bayes_ci_low"] == pytest.approx(c.effect - z * c.se, rel=1e-7)
        checked += 1
    assert checked == 4 * 2 * 4  # 4 quantile metrics x 2 non-baseline variants x 4 segments
    main = {(r["metric"], r["variant"]): r for r in results if r["segment"] == "all"}
    # The planted 15% faster loads show in p90 and in the home pages' median.
    p90 = main[("page_load_p90", "treatment")]
    assert p90["rel_ci_high"] < 0 and p90["rel_p_value"] < 1e-6
    assert main[("load_p99", "holdout")]["rel_effect"] is None  # an arm without values
    # A segment too small for p99's bounds (n <= 380): nulls, while its p90 has numbers.
    small = {
        r["metric"]: r
        for r in results
        if r["segment"] == "platform=other" and r["variant"] == "treatment"
    }
    assert main[("load_p99", "treatment")]["rel_p_value"] is not None
    assert small["load_p99"]["rel_p_value"] is None
    assert small["load_p99"]["mean_baseline"] is not None
    assert small["page_load_p90"]["rel_p_value"] is not None


@pytest.mark.spark
def test_the_decision_reads_the_fixed_horizon_estimate_of_a_quantile(analysed, quantile_registry):
    """Sequential experiment: the family's p-values are always-valid for conversion, fixed
    horizon for the quantiles; a quantile guardrail is checked on its fixed-horizon interval."""
    _, lake, _, _ = analysed
    exp = quantile_registry.experiments[EXP]
    rows = [r for r in _gold(lake, GOLD_EXPERIMENT_RESULTS) if r["segment"] == "all"]
    family = [r for r in rows if r["role"] in ("primary", "secondary")]
    assert {r["metric"] for r in family} == {
        "page_load_p90",
        "conversion",
        "load_p99",
        "revenue_p75",
    }
    p = [
        r["rel_p_value"] if r["metric_kind"] == "quantile" else r["seq_rel_p_value"] for r in family
    ]
    adjusted = adjust_pvalues(np.array([np.nan if x is None else x for x in p]), method="holm")
    for r, q in zip(family, adjusted, strict=True):
        if math.isnan(q):
            assert r["p_value_adjusted"] is None, r["metric"]
        else:
            assert r["p_value_adjusted"] == pytest.approx(q, rel=1e-12), r["metric"]
        significant = r["p_value_adjusted"] is not None and r["p_value_adjusted"] < 0.05
        assert r["significant"] == significant
    guard = next(r for r in rows if r["metric"] == "load_p50_home" and r["variant"] == "treatment")
    g = guardrail_check(0.02, guard["rel_ci_low"], guard["rel_ci_high"], higher_is_better=False)
    assert (guard["guardrail_bound"], guard["guardrail_breached"]) == (g.bound, g.breached)
    assert guard["guardrail_bound"] == guard["rel_ci_low"]  # lower is better: the lower bound
    assert not guard["guardrail_breached"]
    # page_load_p90 (primary) is significantly lower for treatment: lower is better, so ship.
    p90 = next(r for r in rows if r["metric"] == "page_load_p90" and r["variant"] == "treatment")
    assert p90["significant"] and p90["decision"] == "ship"
    assert exp.analysis.sequential


@pytest.mark.spark
def test_abp_results_and_the_dashboard_show_quantile_metrics(
    analysed, quantile_registry, registry_root, monkeypatch
):
    home, lake, _, want = analysed
    monkeypatch.setenv("ABP_HOME", str(home.home))
    monkeypatch.setenv("ABP_REGISTRY", str(registry_root))
    runner = CliRunner()
    out = runner.invoke(main, ["results", EXP, "--json"])
    assert out.exit_code == 0, out.output
    assert "NaN" not in out.output and "Infinity" not in out.output
    card = json.loads(out.output)
    entries = {(e["metric"], e["variant"]): e for e in card["metrics"]}
    p90 = entries[("page_load_p90", "treatment")]
    assert (p90["kind"], p90["quantile"], p90["level"], p90["sequential"]) == (
        "quantile",
        0.9,
        "event",
        None,
    )
    assert p90["mean"]["control"] == want["moments"][("all", "page_load_p90", "control")].quantile
    assert p90["cuped"] is None and set(p90["relative"]) == {
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
    }
    guard = entries[("load_p50_home", "treatment")]
    assert guard["role"] == "guardrail" and guard["guardrail"]["breached"] is False
    assert entries[("conversion", "treatment")]["kind"] == "proportion"
    assert entries[("conversion", "treatment")]["sequential"] is not None
    assert "quantile" not in entries[("conversion", "treatment")]
    assert Scorecard.from_json(card).as_json() == card  # the JSON face reads back

    text = runner.invoke(main, ["results", EXP]).output
    line = next(x for x in text.splitlines() if "page_load_p90" in x and "treatment" in x)
    assert "fixed horizon only; p90 of events:" in line
    rel = p90["relative"]
    assert f"{rel['effect']:+.1%}" in line and f"{rel['ci_low']:+.1%}" in line
    assert "p75 per unit" in text

    typed = read_scorecard(lake, quantile_registry, EXP)
    assert to_json(typed) == to_json(card)
    for sequential in (True, False):
        frame = dashboard.scorecard_rows(typed, quantile_registry.metrics, True, sequential)
        row = frame[(frame["metric"] == "page_load_p90") & (frame["variant"] == "treatment")]
        assert row["statistic"].item() == "p90 of events"
        assert row["estimate"].item() == "fixed horizon only (quantile)"
        assert row["lift"].item() == pytest.approx(rel["effect"])
        assert row["verdict"].item() == "better"
    est, label = dashboard.pick_estimate(p90, cuped=True, sequential=True)
    assert est == p90["relative"] and label == "fixed horizon only (quantile)"
    assert render(card).splitlines() == render(typed).splitlines()


@pytest.mark.spark
def test_quantiles_of_a_unit_other_than_user_id(spark, home):
    """exp_team of test_sufficient_stats (teams of users, a user in two teams): the values array
    and the count side read the same events, and the per-unit sums add up."""
    from tests.analysis import test_sufficient_stats as base

    metrics = {
        **base.METRICS,
        "load_p90": Metric(
            id="load_p90", kind="quantile", event="page_view", quantile=0.9, level="event"
        ),
        "revenue_p50": Metric(
            id="revenue_p50", kind="quantile", event="purchase", quantile=0.5, level="unit"
        ),
    }
    exp = base.TEAM_EXPERIMENT
    exp = exp.model_copy(
        update={
            "metrics": exp.metrics.model_copy(
                update={"secondary": [*exp.metrics.secondary, "load_p90", "revenue_p50"]}
            )
        }
    )
    registry = Registry(experiments={exp.id: exp}, metrics=metrics)
    result = experiment_stats(spark, base.write_bronze(Lake(home)), registry, exp.id, base.DAY)
    rows = {(r["segment"], r["metric"], r["variant"]): r for r in result.stats.to_pylist()}
    seen = 0
    for (segment, metric, variant), r in rows.items():
        if metric == "load_p90":
            assert r["q_n"] == r["q_events_sum"] == r["den_sum"]
            assert r["q_n_units"] <= r["n"] and r["q_below_sum"] <= r["q_n"]
            assert r["q_below_events_sum"] <= r["q_events_sum_sq"]
            seen += r["q_n"] > 0
        if metric == "revenue_p50":
            assert r["q_n"] == r["n"] == result.units[segment][variant]
            assert r["q_n_units"] is None
    assert seen >= 4


# ---- the decision's reading of a quantile row (no Spark) ---------------------------------------


def _verdict(**kw) -> MetricVerdict:
    from ab_pipelines.analysis.decision import Estimate

    base = dict(
        metric="load_p90",
        role="primary",
        variant="treatment",
        baseline="control",
        segment="all",
        n_baseline=900,
        n_variant=910,
        mean_baseline=812.5,
        mean_variant=700.1,
        absolute=Estimate(-112.4, -150.0, -70.0, 1e-5),
        relative=Estimate(-0.138, -0.18, -0.09, 2e-5),
        cuped=None,
        sequential_absolute=Estimate(),
        sequential_relative=Estimate(),
        kind="quantile",
        quantile=0.9,
        level="event",
    )
    return MetricVerdict(**{**base, **kw})


def test_a_quantile_verdict_is_read_at_its_fixed_horizon():
    v = _verdict()
    assert v.fixed_horizon_only and v.statistic == "p90 of events"
    assert v.decision_relative(sequential=True) == v.relative == v.monitoring_relative
    assert v.standing(higher_is_better=False).better is True
    assert v.view(want_cuped=True, want_sequential=True) == (
        v.relative,
        "fixed horizon only (quantile)",
    )
    face = v.as_json()
    assert (face["kind"], face["quantile"], face["level"], face["sequential"]) == (
        "quantile",
        0.9,
        "event",
        None,
    )
    assert MetricVerdict.from_json(face) == v
    mean = _verdict(kind="ratio", quantile=None, level=None)
    assert not mean.fixed_horizon_only and mean.statistic == "mean"
    assert mean.decision_relative(sequential=True) == mean.sequential_relative
    assert "quantile" not in mean.as_json() and mean.as_json()["kind"] == "ratio"
    old = _verdict(kind=None, quantile=None, level=None)  # rows written before metric_kind
    assert "kind" not in old.as_json() and old.as_json()["sequential"] is not None
