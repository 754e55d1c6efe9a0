"""The planted truth: exact lifts, the analytic conversion lift against a Monte Carlo, and the SRM."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from scipy.stats import chisquare

from ab_pipelines.config.registry import Registry, load_registry
from ab_pipelines.events.parse import read_lines
from ab_pipelines.settings import paths
from ab_pipelines.simulate import _assign_bandit, simulate_days
from ab_pipelines.simulate.population import assign_population, make_population, registry_assigner
from ab_pipelines.simulate.traffic import visitors
from ab_pipelines.simulate.truth import conversion_lift, metric_lift, user_multipliers

REPO = Path(__file__).resolve().parents[2]
START = dt.date(2026, 11, 2)
USERS, SEED = 2000, 5


@pytest.fixture(scope="module")
def registry():
    return load_registry(REPO)


@pytest.fixture(scope="module")
def truth(tmp_path_factory, registry):
    home = paths(tmp_path_factory.mktemp("abp"))
    for i in range(4):  # day by day, as the demo does: the file accumulates lifts by as-of day
        simulate_days(
            home,
            START + dt.timedelta(days=i),
            1,
            users=USERS,
            seed=SEED,
            registry=registry,
            history_days=0,
        )
    return orjson.loads(home.truth_file.read_bytes())


def _lifts(truth: dict, exp: str, metric: str, variant: str) -> dict[str, float]:
    return truth["experiments"][exp]["metrics"][metric][variant]["expected_relative_lift"]


@pytest.mark.parametrize(
    ("exp", "metric", "variant", "lift"),
    [
        ("checkout_layout", "revenue_per_order", "one_page", 0.05),
        ("checkout_layout", "revenue", "one_page", 0.05),
        ("checkout_layout", "page_load_ms", "one_page", 0.0),
        ("search_speed", "page_load_ms", "lite", -0.10),
        ("search_speed", "conversion", "lite", 0.0),
        ("checkout_cta", "revenue", "treatment", 0.08),
        ("checkout_cta", "orders", "treatment", 0.08),
        ("checkout_cta", "page_load_ms", "treatment", 0.0),
        ("recs_ranking", "revenue", "treatment", 0.03),
        ("recs_ranking", "revenue_per_order", "treatment", 0.03),
        ("homepage_aa", "conversion", "b", 0.0),
        ("homepage_aa", "revenue", "b", 0.0),
    ],
)
def test_lifts_that_follow_exactly_from_the_multipliers(truth, exp, metric, variant, lift):
    lifts = _lifts(truth, exp, metric, variant)
    first = "2026-11-04" if exp == "search_speed" else "2026-11-02"  # only days it ran
    assert sorted(lifts) == [
        d for d in ("2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05") if d >= first
    ]
    assert all(v == pytest.approx(lift, abs=1e-12) for v in lifts.values())


def test_flags_and_multipliers(truth):
    exps = truth["experiments"]
    assert exps["recs_ranking"]["srm"] is True and exps["recs_ranking"]["aa"] is False
    assert exps["homepage_aa"]["aa"] is True and exps["homepage_aa"]["srm"] is False
    assert not any(exps[e]["aa"] or exps[e]["srm"] for e in ("checkout_cta", "search_speed"))
    info = exps["checkout_cta"]["metrics"]["conversion"]["treatment"]
    assert info["role"] == "primary"
    assert info["multipliers"] == {"purchase_prob": 1.08, "order_value": 1.0, "page_load": 1.0}
    assert "control" not in exps["checkout_cta"]["metrics"]["conversion"]  # baseline has no lift
    assert exps["checkout_cta"]["metrics"]["page_load_ms"]["treatment"]["role"] == "guardrail"


def test_revenue_combines_both_multipliers(registry):
    mult = {"purchase_prob": 1.08, "order_value": 1.05, "page_load": 0.9}
    metrics = registry.metrics
    assert metric_lift(metrics["revenue"], mult, 0.0) == pytest.approx(1.08 * 1.05 - 1)
    assert metric_lift(metrics["revenue_per_order"], mult, 0.0) == pytest.approx(0.05)
    assert metric_lift(metrics["orders"], mult, 0.0) == pytest.approx(0.08)
    assert metric_lift(metrics["page_load_ms"], mult, 0.0) == pytest.approx(-0.10)
    assert metric_lift(metrics["conversion"], mult, 0.0123) == 0.0123


def test_conversion_lift_matches_a_monte_carlo_of_the_model(truth, registry):
    lifts = _lifts(truth, "checkout_cta", "conversion", "treatment")
    values = [lifts[d] for d in sorted(lifts)]
    assert values[0] == pytest.approx(0.08)  # one day: exactly the purchase multiplier
    assert all(0 < b < a for a, b in zip(values, values[1:], strict=False))  # dilutes with time

    pop = make_population(USERS, SEED)
    assigner = registry_assigner(registry)
    variants = assign_population(pop, registry.experiments["checkout_cta"], assigner)
    # The demo bandit also moves purchases (of the users it assigned by 2026-11-04, at their
    # first visit): the truth reads each user's purchase probability with it.
    bandit, arms = registry.experiments["promo_banner"], {}
    for i in range(3):
        day = START + dt.timedelta(days=i)
        assigned = _assign_bandit(pop, bandit, assigner, day, visitors(pop, day, SEED), arms)
    other = user_multipliers(pop.size, {"promo_banner": assigned}, registry.experiments)
    q_all = pop.purchase_prob * other["purchase_prob"]
    v, q = pop.visit_prob[variants >= 0], q_all[variants >= 0]
    horizon = 3  # as of 2026-11-04
    assert conversion_lift(v, q, 1.08, horizon) == pytest.approx(lifts["2026-11-04"], abs=1e-12)
    # Brute force: a user converts if any visit in the window buys (first exposure = first visit).
    # Common random numbers make the two arms differ only where the multiplier matters.
    rng = np.random.default_rng(2024)
    converted = np.zeros(2)
    for _ in range(10):
        shape = (200, len(v), horizon)
        visit = rng.random(shape) < v[None, :, None]
        draw = rng.random(shape)
        for arm, m in enumerate((1.0, 1.08)):
            converted[arm] += (visit & (draw < q[None, :, None] * m)).any(axis=2).sum()
    assert converted[1] / converted[0] - 1 == pytest.approx(lifts["2026-11-04"], abs=0.004)


def _first_variants(raw: Path) -> dict[str, Counter]:
    """Distinct exposed users per experiment and variant, read from every exposures file."""
    seen: dict[tuple[str, str], str] = {}
    for path in sorted((raw / "exposures").glob("date=*/*.jsonl")):
        lines, _ = read_lines(path.read_bytes(), gzipped=False)
        for line in lines:
            try:
                value = orjson.loads(line)["value"]
                seen.setdefault((value["experiment_id"], value["user_id"]), value["variant"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
    out: dict[str, Counter] = {}
    for (exp, _), variant in seen.items():
        out.setdefault(exp, Counter())[variant] += 1
    return out


def test_srm_experiment_is_unbalanced_and_the_aa_test_is_not(tmp_path, registry):
    wanted = ("recs_ranking", "homepage_aa")
    small = Registry(
        experiments={k: registry.experiments[k] for k in wanted}, metrics=registry.metrics
    )
    home = paths(tmp_path)
    simulate_days(home, START, 5, users=30_000, seed=3, registry=small, history_days=0)
    counts = _first_variants(home.raw)
    for exp in wanted:
        variant_ids = registry.experiments[exp].variant_ids
        observed = [counts[exp][vid] for vid in variant_ids]
        assert min(observed) > 1000
        p = chisquare(observed).pvalue
        assert (p < 0.001) if exp == "recs_ranking" else (p > 0.01), (exp, observed, p)
