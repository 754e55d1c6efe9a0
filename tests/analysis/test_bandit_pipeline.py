"""Bandits in the pipeline (issue 26, part 4): the period-weighted results, the period-aware SRM,
the weights step, the publish of the weights with the allocation record, and the simulator's
sticky first-visit assignment. No Spark: the Spark pass's period rows are built from raw arrays
here; the pipeline end to end (Spark, the demo's bandit) is in tests/analysis/test_bandit_demo.py.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps

from ab_pipelines.analysis.bandits import bandit_weight_rows, period_labels, period_moments
from ab_pipelines.analysis.results import experiment_results, srm_rows
from ab_pipelines.config.allocations import Period, allocation_periods
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.publish import current_payload, publish
from ab_pipelines.config.registry import load_registry
from ab_pipelines.config.validate import validate_registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_BANDIT_WEIGHTS,
    GOLD_SUFFICIENT_STATS,
    OPS_AUDIT_LOG,
    OPS_BANDIT_ALLOCATIONS,
)
from ab_pipelines.simulate import _assign_bandit, make_population
from ab_pipelines.stats.bandit import thompson_weights

DAY = dt.date(2026, 11, 5)
ARMS = ("none", "discount", "free_shipping")
CONVERSION = Metric(id="conversion", kind="proportion", event="purchase", agg="any")


def _bandit(**bandit) -> Experiment:
    return Experiment(
        id="promo",
        name="promo",
        owner="o",
        type="bandit",
        status="running",
        start_date=dt.date(2026, 11, 2),
        variants=[{"id": a, "weight": w} for a, w in zip(ARMS, (0.34, 0.33, 0.33), strict=True)],
        bandit={"metric": "conversion", **bandit},
        metrics={"primary": ["conversion"]},
        analysis={"engine": "bayesian"},
    )


# Three allocation periods, the base rate drifting upwards while the best arm gains weight: the
# pooled comparison mixes the days differently per arm, the period-weighted one does not.
WEIGHTS = ((0.34, 0.33, 0.33), (0.2, 0.3, 0.5), (0.1, 0.1, 0.8))
BASE = (0.05, 0.08, 0.12)
LIFT = (1.0, 1.05, 1.25)
UNITS = (3000, 2000, 4000)


def _raw(seed: int = 1) -> list[tuple[int, int, np.ndarray]]:
    """(period, arm, per-unit 0/1 values) drawn as a bandit assigns them."""
    rng = np.random.default_rng(seed)
    out = []
    for p, (w, base, n) in enumerate(zip(WEIGHTS, BASE, UNITS, strict=True)):
        arm = rng.choice(3, size=n, p=w)
        for k in range(3):
            size = int(np.sum(arm == k))
            out.append((p, k, (rng.random(size) < base * LIFT[k]).astype(float)))
    return out


def _stats_table(raw, labels=("bandit_period=v0", "bandit_period=v4", "bandit_period=v7")):
    rows = []
    blank = {name: 0.0 for name in GOLD_SUFFICIENT_STATS.schema.names}
    blank |= {f: None for f in GOLD_SUFFICIENT_STATS.schema.names if f.startswith("q_")}
    for segment in ("all", *labels):
        for k, arm in enumerate(ARMS):
            y = np.concatenate(
                [v for p, a, v in raw if a == k and (segment == "all" or labels[p] == segment)]
            )
            rows.append(
                blank
                | {
                    "experiment_id": "promo",
                    "segment": segment,
                    "metric": "conversion",
                    "variant": arm,
                    "n": len(y),
                    "maturing": 0,
                    "num_sum": float(y.sum()),
                    "num_sum_sq": float((y * y).sum()),
                    "den_sum": float(len(y)),
                    "den_sum_sq": float(len(y)),
                    "num_den_sum": float(y.sum()),
                    "day": DAY,
                    "registry_sha": None,
                    "config_version": None,
                }
            )
    return pa.Table.from_pylist(rows, schema=GOLD_SUFFICIENT_STATS.schema)


def test_results_are_weighted_by_period_as_computed_from_raw_arrays():
    raw = _raw()
    exp = _bandit()
    table = experiment_results(exp, {"conversion": CONVERSION}, DAY, _stats_table(raw), False)
    rows = {r["variant"]: r for r in table.to_pylist()}
    assert set(rows) == {"discount", "free_shipping"}
    assert {r["segment"] for r in table.to_pylist()} == {"all"}  # the periods are no breakdown
    n_p = np.array([sum(len(v) for p, _, v in raw if p == q) for q in range(3)], dtype=float)
    w = n_p / n_p.sum()

    def arm(k):
        ys = [next(v for p, a, v in raw if p == q and a == k) for q in range(3)]
        mean = sum(w[q] * ys[q].mean() for q in range(3))
        terms = np.array([w[q] ** 2 * ys[q].var(ddof=1) / len(ys[q]) for q in range(3)])
        return mean, terms, np.array([len(y) - 1 for y in ys])

    va, ta, da = arm(0)
    for k, name in ((1, "discount"), (2, "free_shipping")):
        vb, tb, db = arm(k)
        r = rows[name]
        assert r["mean_baseline"] == pytest.approx(va, rel=1e-12)
        assert r["mean_variant"] == pytest.approx(vb, rel=1e-12)
        assert r["abs_effect"] == pytest.approx(vb - va, rel=1e-10)
        var_rel = tb.sum() / va**2 + ta.sum() * vb**2 / va**4
        assert r["rel_effect"] == pytest.approx((vb - va) / va, rel=1e-10)
        df = (ta.sum() + tb.sum()) ** 2 / (np.sum(ta**2 / da) + np.sum(tb**2 / db))
        half = sps.t.ppf(0.975, df) * np.sqrt(var_rel)
        assert r["rel_ci_high"] - r["rel_ci_low"] == pytest.approx(2 * half, rel=1e-8)
        # the always-valid interval is wider; the flat-prior posterior is the fixed estimate
        assert r["seq_rel_ci_high"] - r["seq_rel_ci_low"] > 2 * half
        assert r["bayes_effect"] == pytest.approx(r["rel_effect"], rel=1e-12)
        assert r["bayes_chance_to_win"] == pytest.approx(
            sps.norm.cdf(((vb - va) / va) / np.sqrt(var_rel)), rel=1e-9
        )
        assert r["cuped_rel_effect"] is None  # no CUPED on a bandit
        assert r["n_baseline"] + r["n_variant"] == sum(len(v) for _, a, v in raw if a in (0, k))
    # the pooled lift is biased upwards here (the best arm got more of the high-base days)
    pooled = (
        np.concatenate([v for _, a, v in raw if a == 2]).mean()
        / np.concatenate([v for _, a, v in raw if a == 0]).mean()
    )
    assert pooled - 1 > rows["free_shipping"]["rel_effect"] + 0.2


def test_period_weighted_effect_is_unbiased_over_replays():
    """Over 300 replays the period-weighted lift centres on the planted 25%, the pooled does not."""
    weighted, pooled = [], []
    for seed in range(300):
        raw = _raw(seed)
        labels = ["p0", "p1", "p2"]
        by_key = {
            ("conversion", ARMS[k], labels[p]): {
                "n": len(v),
                "num_sum": v.sum(),
                "num_sum_sq": (v * v).sum(),
            }
            for p, k, v in raw
        }
        m, units = period_moments(by_key, "conversion", ARMS, labels)
        w = units / units.sum()
        means = (m.sum / m.n) @ w
        weighted.append(means[2] / means[0] - 1)
        pooled.append((m.sum[2].sum() / m.n[2].sum()) / (m.sum[0].sum() / m.n[0].sum()) - 1)
    se = np.std(weighted) / np.sqrt(len(weighted))
    assert abs(np.mean(weighted) - 0.25) < 3 * se + 0.005  # ratio-of-means bias is O(1/n)
    assert np.mean(pooled) - 0.25 > 0.3


def test_sparse_periods_are_merged_into_the_one_before():
    by_key = {
        ("m", v, p): {"n": n, "num_sum": n * 0.5, "num_sum_sq": n * 0.5}
        for p, ns in (("a", (50, 60)), ("b", (1, 70)), ("c", (40, 0)), ("d", (30, 30)))
        for v, n in zip(("x", "y"), ns, strict=True)
    }
    m, units = period_moments(by_key, "m", ("x", "y"), ["a", "b", "c", "d"])
    assert m.n.tolist() == [[91.0, 30.0], [130.0, 30.0]]  # b and c joined a
    assert units.tolist() == [221.0, 60.0]
    assert period_labels({("m", "x", "all"): {}}) == ["all"]


def test_srm_of_a_bandit_uses_each_period_s_weights_and_their_mixture():
    rng = np.random.default_rng(3)
    periods = [
        Period(0, None, WEIGHTS[0]),
        Period(4, None, WEIGHTS[1]),
        Period(7, None, WEIGHTS[2]),
    ]
    units = {"all": dict.fromkeys(ARMS, 0)}
    for p, n in zip(periods, UNITS, strict=True):
        counts = rng.multinomial(n, p.weights)
        units[p.label] = dict(zip(ARMS, counts.tolist(), strict=True))
        for a, c in units[p.label].items():
            units["all"][a] += c
    exp = _bandit()
    good = {r["segment"]: r for r in srm_rows(exp, DAY, units, periods).to_pylist()}
    assert not good["all"]["flagged"] and good["all"]["p_value"] > 0.001
    assert good["bandit_period=v7"]["weight"] in WEIGHTS[2]
    mixture = sum(n * np.array(w) for n, w in zip(UNITS, WEIGHTS, strict=True)) / sum(UNITS)
    weights = [r["weight"] for r in srm_rows(exp, DAY, units, periods).to_pylist()][:3]
    np.testing.assert_allclose(weights, mixture, rtol=0.02)  # the realised N_p, close to UNITS
    # against the YAML's weights alone a working bandit would look broken
    naive = [r for r in srm_rows(exp, DAY, units).to_pylist() if r["segment"] == "all"]
    assert naive[0]["flagged"]
    # a real break: 30% of free_shipping's exposures lost in the last period
    units["bandit_period=v7"]["free_shipping"] = int(
        units["bandit_period=v7"]["free_shipping"] * 0.7
    )
    units["all"] = {a: sum(units[p.label][a] for p in periods) for a in ARMS}
    bad = {r["segment"]: r for r in srm_rows(exp, DAY, units, periods).to_pylist()}
    assert bad["bandit_period=v7"]["flagged"] and bad["all"]["flagged"]


LABELS = ("bandit_period=v0", "bandit_period=v4", "bandit_period=v7")


def _by_key(raw, labels=LABELS):
    return {
        ("conversion", ARMS[k], labels[p]): {"n": len(v), "num_sum": v.sum(), "num_sum_sq": v.sum()}
        for p, k, v in raw
    }


def test_weights_step_updates_on_its_cadence_after_the_burn_in():
    raw = _raw()
    by_key = _by_key(raw)
    periods = [
        Period(0, None, WEIGHTS[0]),
        Period(4, None, WEIGHTS[1]),
        Period(7, None, WEIGHTS[2]),
    ]
    exp = _bandit(min_units_per_arm=200, floor=0.02)
    rows = bandit_weight_rows(exp, CONVERSION, DAY, by_key, periods, ended=False).to_pylist()
    assert [r["variant"] for r in rows] == list(ARMS)
    assert all(r["updated"] and r["reason"] == "updated" for r in rows)
    assert [r["live_weight"] for r in rows] == list(WEIGHTS[2])
    weights = np.array([r["weight"] for r in rows])
    assert weights.sum() == pytest.approx(1.0, abs=1e-12) and weights.min() >= 0.02
    assert np.allclose(weights * 10_000, np.round(weights * 10_000))  # whole hash buckets
    m, units = period_moments(by_key, "conversion", ARMS, list(LABELS))
    expected = thompson_weights(
        m, by_period=True, period_share=units, floor=0.02, seed=rows[0]["seed"]
    )
    np.testing.assert_allclose(weights, expected.weights, atol=1e-4)
    np.testing.assert_allclose([r["best_probability"] for r in rows], expected.best_probability)
    assert weights[2] == weights.max()  # free shipping is the best arm
    # the same data and day give the same weights (the seed is the experiment's and the day's)
    again = bandit_weight_rows(exp, CONVERSION, DAY, by_key, periods, ended=False)
    assert again.column("weight").to_pylist() == weights.tolist()

    def reason(**kw):
        e = _bandit(**({"min_units_per_arm": 200} | kw.pop("bandit", {})))
        r = bandit_weight_rows(
            e, CONVERSION, kw.get("day", DAY), by_key, periods, kw.get("ended", False)
        )
        out = r.to_pylist()
        assert [x["weight"] for x in out] == [x["live_weight"] for x in out] or out[0]["updated"]
        return out[0]["reason"], out[0]["updated"]

    assert reason(ended=True) == ("ended: no new units to allocate", False)
    # day 4 of an every-3-days bandit is not an update day; day 3 is
    assert reason(bandit={"update_days": 3}) == ("not an update day (every 3 days)", False)
    assert reason(bandit={"update_days": 3}, day=dt.date(2026, 11, 4)) == ("updated", True)
    why, updated = reason(bandit={"min_units_per_arm": 5000})
    assert not updated and why == "burn-in: none, discount below 5000 units"
    empty = bandit_weight_rows(exp, CONVERSION, DAY, {}, periods[:1], ended=False).to_pylist()
    assert not empty[0]["updated"] and [r["weight"] for r in empty] == list(WEIGHTS[0])


def test_validation_names_what_a_bandit_cannot_have(tmp_path, registry_copy):
    path = registry_copy / "experiments" / "promo_banner.yaml"
    text = path.read_text()
    path.write_text(
        text.replace("bandit: {metric: conversion,", "bandit: {metric: revenue,")
        .replace("floor: 0.01}", "floor: 0.4}")
        .replace("secondary: [revenue]", "secondary: [revenue, revenue_per_order]")
        .replace("engine: bayesian}", "engine: bayesian, segments: [platform]}")
    )
    problems = [str(p) for p in validate_registry(registry_copy, None)]
    mine = [p for p in problems if "promo_banner.yaml" in p]
    assert any(
        "bandit.metric" in p and "'revenue' is not one of metrics.primary" in p for p in mine
    )
    assert any("bandit.floor" in p and "above 1/3" in p for p in mine)
    assert any("metrics" in p and "'revenue_per_order' is a ratio" in p for p in mine)
    assert any("analysis.segments" in p and "not for a bandit" in p for p in mine)
    path.write_text(text.replace("type: bandit\n", ""))
    problems = [str(p) for p in validate_registry(registry_copy, None)]
    assert any("promo_banner.yaml" in p and "set type: bandit" in p for p in problems)
    path.write_text(
        text.replace(
            "bandit: {metric: conversion, update_days: 1, min_units_per_arm: 200, floor: 0.01}\n",
            "",
        )
    )
    problems = [str(p) for p in validate_registry(registry_copy, None)]
    assert any("promo_banner.yaml" in p and "a bandit needs its settings" in p for p in problems)


def test_publish_serves_the_newest_weights_and_records_the_periods(home, registry_copy):
    lake = Lake(home)
    t0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    first = publish(home, registry_copy, now=t0)
    entry = current_payload(home)["experiments"]["promo_banner"]
    assert entry["variant_buckets"] == [[0, 3334], [3334, 6667], [6667, 10000]]
    exp = load_registry(registry_copy).experiments["promo_banner"]
    rows = [
        {
            "experiment_id": "promo_banner",
            "metric": "conversion",
            "variant": v,
            "weight": w,
            "live_weight": 1 / 3,
            "updated": True,
            "day": day,
        }
        for day, ws in (
            (dt.date(2026, 11, 2), (0.2, 0.3, 0.5)),
            (dt.date(2026, 11, 3), (0.1, 0.15, 0.75)),
        )
        for v, w in zip(exp.variant_ids, ws, strict=True)
    ]
    table = pa.Table.from_pylist(rows).cast(
        pa.schema([GOLD_BANDIT_WEIGHTS.schema.field(n) for n in rows[0]])
    )
    full = pa.Table.from_pylist(
        [{n: r.get(n) for n in GOLD_BANDIT_WEIGHTS.schema.names} for r in table.to_pylist()],
        schema=GOLD_BANDIT_WEIGHTS.schema,
    )
    lake.write_arrow(GOLD_BANDIT_WEIGHTS, full)
    t1 = t0 + dt.timedelta(days=2)
    second = publish(home, registry_copy, now=t1)
    assert second.changed and second.version == first.version + 1
    entry = current_payload(home)["experiments"]["promo_banner"]
    assert entry["variant_buckets"] == [[0, 1000], [1000, 2500], [2500, 10000]]  # the newest day
    assert publish(home, registry_copy, now=t1 + dt.timedelta(hours=1)).changed is False
    # a later day that did not update (e.g. not an update day) changes nothing: no revert
    stale = [r | {"day": dt.date(2026, 11, 4), "weight": 1 / 3, "updated": False} for r in rows]
    lake.write_arrow(
        GOLD_BANDIT_WEIGHTS,
        pa.Table.from_pylist(
            [{n: r.get(n) for n in GOLD_BANDIT_WEIGHTS.schema.names} for r in stale],
            schema=GOLD_BANDIT_WEIGHTS.schema,
        ),
    )
    assert publish(home, registry_copy, now=t1 + dt.timedelta(hours=2)).changed is False
    allocations = sorted(
        lake.read_arrow(OPS_BANDIT_ALLOCATIONS).to_pylist(), key=lambda r: r["config_version"]
    )
    assert [(r["config_version"], r["source"], r["weights"]) for r in allocations] == [
        (1, "registry", [0.3334, 0.3333, 0.3333]),
        (2, "bandit update", [0.1, 0.15, 0.75]),
    ]
    periods = allocation_periods(lake, exp, t1 + dt.timedelta(days=1))
    assert [(p.label, p.start, p.weights) for p in periods] == [
        ("bandit_period=v1", None, (0.3334, 0.3333, 0.3333)),
        ("bandit_period=v2", t1, (0.1, 0.15, 0.75)),
    ]
    assert len(allocation_periods(lake, exp, t1)) == 1  # as of before the second publish
    audit = sorted(
        (r for r in lake.read_arrow(OPS_AUDIT_LOG).to_pylist() if r["action"] == "publish"),
        key=lambda r: r["at"],
    )
    assert json.loads(audit[-1]["detail"])["bandit_weights"] == {"promo_banner": [0.1, 0.15, 0.75]}


def test_simulated_users_keep_their_first_arm_and_new_ones_see_the_new_weights():
    pop = make_population(4000, 7)
    exp = _bandit()
    rng = np.random.default_rng(0)
    day1 = np.sort(rng.choice(pop.size, 1500, replace=False))
    day2 = np.sort(rng.choice(pop.size, 1500, replace=False))

    def assigner(weights):
        def assign(e, unit, attrs):
            u = int(unit.removeprefix("user-"))
            return ARMS[
                int(np.searchsorted(np.cumsum(weights), (u * 7919 % 10_000) / 10_000, "right"))
            ]

        return assign

    arms: dict[int, tuple[int, int]] = {}
    d1, d2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)
    first = _assign_bandit(pop, exp, assigner((1 / 3, 1 / 3, 1 / 3)), d1, day1, arms)
    assert set(np.flatnonzero(first >= 0)) == set(day1.tolist())
    second = _assign_bandit(pop, exp, assigner((0.0, 0.0, 1.0)), d2, day2, arms)
    both = np.intersect1d(day1, day2)
    new = np.setdiff1d(day2, day1)
    assert (second[both] == first[both]).all()  # sticky
    assert (second[new] == 2).all()  # new visitors get the weights served now
    assert (second[day1] == first[day1]).all()  # earlier users are still served their arm
    # day 1 simulated again: the same arms, not the users first assigned on day 2
    again = _assign_bandit(pop, exp, assigner((1 / 3, 1 / 3, 1 / 3)), d1, day1, arms)
    assert (again == first).all()
    killed = _assign_bandit(pop, exp, lambda e, u, a: None, d2, day2, arms)
    assert (killed == -1).all()  # a killed bandit serves nobody its arms
