"""Differential impact (gold.heterogeneity) and anytime-valid FDR (e-values, e-BH) in the pipeline.

Issue 26, parts 2 and 3: the numpy step tests each decision metric's effect across the levels of
every segment attribute and stores it; every results row carries the e-value behind its
always-valid p; the scorecard runs e-BH over every day's e-values. Checked against independent
computations (scipy/statsmodels on the per-level estimates) and on planted truths.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from ab_pipelines.analysis.day import results_day
from ab_pipelines.analysis.decision import decision_metrics
from ab_pipelines.analysis.differential import heterogeneity_rows
from ab_pipelines.analysis.results import experiment_results, srm_rows
from ab_pipelines.analysis.scorecard import read_scorecard, render, to_json
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HETEROGENEITY,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
)
from ab_pipelines.stats import e_bh, monitor_discoveries
from tests.analysis.test_results import METRICS, arm_values, experiment, stats_table

DAY = dt.date(2026, 3, 10)
LEVELS = ("platform=android", "platform=ios", "platform=web")


def _segmented(
    rng, n: int, lifts: dict[str, float], exp_id="exp", day=DAY, load: bool = False
) -> pa.Table:
    """gold.sufficient_stats rows: segment "all" and the three platform levels, each level with
    its own lift of revenue and conversion (with ``load``, of page_load_ms instead); the units
    of "all" are the levels' units."""
    parts, everyone = [], {"control": {}, "treatment": {}}
    for level in LEVELS:
        arms = {
            "control": arm_values(rng, n),
            "treatment": arm_values(
                rng,
                n,
                lift=0.0 if load else lifts.get(level, 0.0),
                load_lift=lifts.get(level, 0.0) if load else 0.0,
            ),
        }
        parts.append(stats_table(arms, segment=level, exp_id=exp_id, day=day))
        for v, metrics in arms.items():
            for m, cols in metrics.items():
                prev = everyone[v].get(m)
                everyone[v][m] = (
                    cols
                    if prev is None
                    else tuple(np.concatenate(p) for p in zip(prev, cols, strict=True))
                )
    parts.insert(0, stats_table(everyone, exp_id=exp_id, day=day))
    return pa.concat_tables(parts)


def test_a_planted_segment_is_flagged_and_named_and_q_matches_an_independent_computation():
    exp = experiment(analysis={"segments": ["platform"]})
    rng = np.random.default_rng(7)
    stats = _segmented(rng, 3000, {"platform=ios": 0.4})  # +40% on iOS only
    t = heterogeneity_rows(exp, METRICS, DAY, stats)
    assert set(t.column("metric").to_pylist()) == set(decision_metrics(exp, METRICS))
    rows = {r["metric"]: r for r in t.to_pylist()}
    rev = rows["revenue"]
    assert rev["flagged"] and rev["drivers"] == ["platform=ios"]
    assert rev["level_names"] == list(LEVELS) and rev["levels"] == 3
    assert rows["page_load_ms"]["flagged"] is False  # no planted difference on the guardrail

    # Independent: per-level relative lift and its delta-method se from the raw means (no CUPED:
    # this experiment has the default lookback, so compare the raw test by turning CUPED off).
    raw = heterogeneity_rows(
        experiment(analysis={"segments": ["platform"], "cuped_lookback_days": 0}),
        METRICS,
        DAY,
        stats,
    )
    rev_raw = next(r for r in raw.to_pylist() if r["metric"] == "revenue")
    d, se = [], []
    by_key = {
        (r["variant"], r["segment"]): r for r in stats.to_pylist() if r["metric"] == "revenue"
    }
    for level in LEVELS:
        a, b = by_key[("control", level)], by_key[("treatment", level)]
        ma, mb = a["num_sum"] / a["n"], b["num_sum"] / b["n"]
        va = (a["num_sum_sq"] - a["n"] * ma**2) / (a["n"] - 1) / a["n"]
        vb = (b["num_sum_sq"] - b["n"] * mb**2) / (b["n"] - 1) / b["n"]
        d.append(mb / ma - 1)
        se.append(np.sqrt(vb / ma**2 + mb**2 * va / ma**4))
    d, w = np.array(d), 1 / np.array(se) ** 2
    q = float(np.sum(w * (d - np.sum(w * d) / np.sum(w)) ** 2))
    assert rev_raw["q"] == pytest.approx(q, rel=1e-9)
    assert rev_raw["p_value"] == pytest.approx(sps.chi2.sf(q, 2), rel=1e-9)
    assert rev_raw["level_effects"] == pytest.approx(d.tolist(), rel=1e-9)

    # BH across the experiment's tests (metrics x variants x attributes), as statsmodels does it.
    p = [r["p_value"] for r in t.to_pylist()]
    want = multipletests(p, method="fdr_bh")[1]
    assert [r["p_adjusted"] for r in t.to_pylist()] == pytest.approx(list(want), rel=1e-12)


def test_no_planted_difference_flags_nothing_in_repeated_runs():
    exp = experiment(analysis={"segments": ["platform"]})
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(40):
        t = heterogeneity_rows(exp, METRICS, DAY, _segmented(rng, 400, {}))
        flagged += any(t.column("flagged").to_pylist())
    assert flagged <= 6  # FDR 5% per run over 3 tests: ~2 of 40 runs expected


def test_attributes_with_one_level_and_quantile_metrics_give_no_rows():
    exp = experiment(analysis={"segments": ["platform"]})
    rng = np.random.default_rng(3)
    one = stats_table(
        {"control": arm_values(rng, 300), "treatment": arm_values(rng, 300)},
        segment="platform=ios",
    )
    assert heterogeneity_rows(exp, METRICS, DAY, one).num_rows == 0
    assert (
        heterogeneity_rows(exp, METRICS, DAY, GOLD_SUFFICIENT_STATS.schema.empty_table()).num_rows
        == 0
    )


def test_every_row_carries_the_e_value_behind_its_always_valid_p():
    exp = experiment()
    rng = np.random.default_rng(5)
    stats = stats_table({"control": arm_values(rng, 4000), "treatment": arm_values(rng, 4000, 0.1)})
    t = experiment_results(exp, METRICS, DAY, stats, False)
    for r in t.to_pylist():
        e, p = r["e_value"], r["seq_rel_p_value"]
        assert e is not None and e >= 0
        assert p == pytest.approx(min(1.0, 1.0 / e), rel=1e-9)
    assert max(t.column("e_value").to_pylist()) > 1e3  # the planted +10% on revenue


def _write_day(lake: Lake, exp, day: dt.date, stats: pa.Table) -> None:
    replace = [{"day": day.isoformat()}]
    lake.write_arrow(GOLD_SUFFICIENT_STATS, stats, replace=replace)
    lake.write_arrow(
        GOLD_SRM, srm_rows(exp, day, {"all": {"control": 1, "treatment": 1}}), replace=replace
    )


def test_the_scorecard_shows_flagged_impact_and_e_bh_discoveries_over_the_days(home, registry):
    """Three analysed days of search_speed (it has platform segments) through results_day: the
    card's e-BH discoveries equal monitor_discoveries on the stored e-values, the flagged
    differential impact is on the card, in its JSON and in its text."""
    lake = Lake(home)
    exp = registry.experiments["search_speed"]
    rng = np.random.default_rng(23)
    days = [exp.start_date + dt.timedelta(days=i) for i in range(3)]
    assert set(exp.metric_ids()) == {"page_load_ms", "conversion"}  # the fixture's names
    variant = {"control": exp.variant_ids[0], "treatment": exp.variant_ids[1]}
    for i, day in enumerate(days):
        stats = _segmented(rng, 1500 * (i + 1), {"platform=ios": -0.3}, exp.id, day, load=True)
        rows = [
            r | {"variant": variant[r["variant"]]}
            for r in stats.to_pylist()
            if r["metric"] in exp.metric_ids()
        ]
        _write_day(lake, exp, day, pa.Table.from_pylist(rows, schema=GOLD_SUFFICIENT_STATS.schema))
        results_day(lake, registry, day)

    card = read_scorecard(lake, registry, exp.id, days[-1])
    flagged = [d for d in card.differential_impact if d.flagged]
    assert flagged and all(d.attribute == "platform" for d in flagged)
    assert any("platform=ios" in d.drivers for d in flagged)
    text = render(card)
    assert "DIFFERENTIAL IMPACT" in text and "platform=ios" in text
    assert "anytime-valid FDR (e-BH" in text

    # e-BH: recompute from the stored e-values, independently of the scorecard's reading.
    fdr = card.anytime_fdr
    assert fdr is not None and fdr.looks == 3
    res = lake.read_arrow(GOLD_EXPERIMENT_RESULTS).to_pylist()
    keys = sorted(
        {
            (r["metric"], r["variant"])
            for r in res
            if r["segment"] == "all" and r["e_value"] is not None
        }
    )
    assert fdr.hypotheses == len(keys)
    e = np.array(
        [
            [
                next(
                    r["e_value"]
                    for r in res
                    if r["day"] == d and r["segment"] == "all" and (r["metric"], r["variant"]) == k
                )
                for k in keys
            ]
            for d in days
        ]
    )
    want = monitor_discoveries(e, alpha=exp.analysis.alpha)
    got = {(x.metric, x.variant): x.since for x in fdr.discoveries}
    assert got == {keys[j]: days[want.first_look[j]] for j in np.flatnonzero(want.final)}
    # The monitor keeps what per-look e-BH ever found (a discovery, once made, stays).
    ever = np.any([e_bh(row, alpha=exp.analysis.alpha, m=len(keys)) for row in e], axis=0)
    assert set(got) >= {keys[j] for j in np.flatnonzero(ever)}

    face = json.loads(to_json(card))
    assert face["anytime_fdr"]["looks"] == 3
    assert {d["attribute"] for d in face["differential_impact"]} == {"platform"}
    assert type(card).from_json(face) == card  # the JSON face round-trips

    # gold.heterogeneity carries provenance like every gold table the analysis writes.
    het = lake.read_arrow(GOLD_HETEROGENEITY).to_pylist()
    assert het and all(r["registry_sha"] for r in het)


def test_the_scorecard_carries_the_interactions_of_its_experiment(home, registry):
    """gold.interactions rows naming the experiment (as A or as B) are on its card that day: the
    flagged one as a text line, every one in the JSON face (which round-trips)."""
    from tests.safety.test_conditions import write_interaction

    lake = Lake(home)
    exp = registry.experiments["checkout_cta"]
    rng = np.random.default_rng(8)
    day = exp.start_date
    stats = stats_table(
        {"control": arm_values(rng, 500), "treatment": arm_values(rng, 500)},
        exp_id=exp.id,
        day=day,
    )
    stats = stats.filter(pa.compute.is_in(stats.column("metric"), pa.array(["conversion"])))
    _write_day(lake, exp, day, stats)
    results_day(lake, registry, day)
    write_interaction(lake, day, "checkout_cta", "hero_video")
    write_interaction(lake, day, "homepage_aa", "search_speed")  # not this experiment's
    card = read_scorecard(lake, registry, exp.id, day)
    assert [(i.experiment_a, i.experiment_b) for i in card.interactions] == [
        ("checkout_cta", "hero_video")
    ]
    assert "INTERACTION: checkout_cta x hero_video on revenue" in render(card)
    face = json.loads(to_json(card))
    assert face["interactions"][0]["cells"][3] == {
        "a": "treatment",
        "b": "treatment",
        "n": 100,
        "mean": 2.0,
    }
    assert type(card).from_json(face) == card


def test_poststratification_on_a_segment_attribute_is_reported_beside_cuped():
    """analysis.poststratify: the ps_* columns of segment "all" equal compare_poststratified on
    the attribute's segment rows (GrowthBook's approach), CUPED within levels where it applies;
    nothing the decision reads changes; the JSON entry carries it."""
    from ab_pipelines.analysis.decision import MetricVerdict
    from ab_pipelines.stats import Moments, compare_poststratified

    plain = experiment(analysis={"segments": ["platform"]})
    ps = experiment(analysis={"segments": ["platform"], "poststratify": "platform"})
    stats = _segmented(np.random.default_rng(31), 2000, {"platform=ios": 0.2})
    without = experiment_results(plain, METRICS, DAY, stats, False).to_pylist()
    with_ps = experiment_results(ps, METRICS, DAY, stats, False).to_pylist()
    by = {(r["metric"], r["variant"], r["segment"]): r for r in stats.to_pylist()}
    checked = 0
    for a, b in zip(without, with_ps, strict=True):
        assert {k: v for k, v in a.items() if not k.startswith("ps_")} == {
            k: v for k, v in b.items() if not k.startswith("ps_")
        }
        if b["segment"] != "all" or METRICS[b["metric"]].kind == "ratio":
            assert b["ps_attribute"] is None and b["ps_rel_effect"] is None
            continue

        def strata(variant, metric=b["metric"]):
            rows = [by[(metric, variant, s)] for s in LEVELS]
            return [
                Moments(
                    r["n"],
                    r["num_sum"],
                    r["num_sum_sq"],
                    r["pre_num_sum"],
                    r["pre_num_sum_sq"],
                    r["num_pre_num_sum"],
                )
                for r in rows
            ]

        want = compare_poststratified(
            strata("control"), strata("treatment"), relative=True, cuped=True
        )
        assert b["ps_attribute"] == "platform"
        assert b["ps_rel_effect"] == pytest.approx(want.effect, rel=1e-12)
        assert b["ps_rel_ci_low"] == pytest.approx(want.ci_low, rel=1e-12)
        entry = MetricVerdict.from_gold(b).as_json()
        assert entry["poststratified"]["attribute"] == "platform"
        checked += 1
    assert checked == 2  # revenue and conversion (page_load_ms is a ratio)


def test_poststratify_must_name_a_segment_attribute(registry_copy):
    from ab_pipelines.config import validate_registry

    path = registry_copy / "experiments" / "search_speed.yaml"
    text = path.read_text()
    path.write_text(text.replace("segment_top_n: 3}", "segment_top_n: 3, poststratify: browser}"))
    problems = [
        p for p in validate_registry(registry_copy, None) if p.field == "analysis.poststratify"
    ]
    assert len(problems) == 1 and problems[0].file == "experiments/search_speed.yaml"
    assert "'browser' is not one of analysis.segments (platform, country)" in problems[0].reason
