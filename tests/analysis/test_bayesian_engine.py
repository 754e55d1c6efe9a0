"""The Bayesian engine in the results, the decision and the scorecard's faces (numpy only).

The posterior itself is checked against gbstats and scipy in tests/stats/test_bayesian.py; here:
the gold columns are that posterior on the estimate a decision reads (CUPED where it applies),
priors and directions reach it, and ``analysis.engine: bayesian`` decides by chance to win and
risk while a frequentist experiment decides as before.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ab_pipelines.analysis.decision import Scorecard
from ab_pipelines.analysis.results import experiment_results
from ab_pipelines.analysis.scorecard import render
from ab_pipelines.config.models import Analysis, Metric
from ab_pipelines.stats import RatioMoments
from tests.analysis.test_results import DAY, METRICS, arm_values, by, experiment, stats_table

BAYES = Analysis(engine="bayesian")


def results(exp, lift=0.0, load_lift=0.0, n=6000, seed=3, metrics=METRICS):
    rng = np.random.default_rng(seed)
    arms = {
        "control": arm_values(rng, n),
        "treatment": arm_values(rng, n, lift=lift, load_lift=load_lift),
    }
    return experiment_results(exp, metrics, DAY, stats_table(arms), False), arms


def _se_from_ci(row: dict, prefix: str, df: float | None = None) -> float:
    """The se behind a fixed-horizon interval (Welch t; df large: normal)."""
    half = (row[f"{prefix}_ci_high"] - row[f"{prefix}_ci_low"]) / 2
    return half / sps.norm.ppf(0.975)


def test_flat_prior_posterior_is_the_cuped_estimate_with_a_normal_interval():
    table, _ = results(experiment(analysis=BAYES), lift=0.04)
    row = by(table, metric="revenue", segment="all")
    assert row["cuped_rel_effect"] is not None  # revenue has a pre-period here
    assert row["bayes_effect"] == pytest.approx(row["cuped_rel_effect"], rel=1e-12)
    # Chance to win = Φ(effect / se) with the se of the fixed-horizon CUPED interval (df ~ 12000:
    # the t and normal quantiles agree to 1e-4).
    se = _se_from_ci(row, "cuped_rel")
    assert row["bayes_chance_to_win"] == pytest.approx(
        sps.norm.cdf(row["cuped_rel_effect"] / se), abs=2e-4
    )
    z = sps.norm.ppf(0.975)
    assert row["bayes_ci_low"] == pytest.approx(row["cuped_rel_effect"] - z * se, rel=1e-3)
    # Risks: E[max(0, -δ)] keeping the variant... computed by scipy on N(effect, se²).
    post = sps.norm(row["bayes_effect"], se)
    assert row["bayes_risk_variant"] == pytest.approx(
        post.expect(lambda d: max(0.0, -d)), rel=2e-3, abs=1e-9
    )
    assert row["bayes_risk_control"] == pytest.approx(
        post.expect(lambda d: max(0.0, d)), rel=2e-3, abs=1e-9
    )


def test_an_informative_prior_shrinks_and_a_lower_is_better_metric_flips_the_chance():
    tight = dict(METRICS)
    tight["revenue"] = Metric(
        id="revenue", kind="mean", event="purchase", agg="sum", prior={"mean": 0.0, "sd": 0.01}
    )
    flat, _ = results(experiment(analysis=BAYES), lift=0.05)
    shrunk, _ = results(experiment(analysis=BAYES), lift=0.05, metrics=tight)
    f, s = (by(t, metric="revenue", segment="all") for t in (flat, shrunk))
    assert 0 < s["bayes_effect"] < f["bayes_effect"]
    # The normal-normal update by hand: precision-weighted mean of the data and the prior.
    se = _se_from_ci(f, "cuped_rel")
    expected = (f["bayes_effect"] / se**2) / (1 / se**2 + 1 / 0.01**2)
    assert s["bayes_effect"] == pytest.approx(expected, rel=1e-3)
    # page_load_ms is lower-is-better: slower pages (+8%) have a chance to win near 0.
    slow, _ = results(experiment(analysis=BAYES), load_lift=0.08)
    load = by(slow, metric="page_load_ms", segment="all")
    assert load["bayes_effect"] > 0 and load["bayes_chance_to_win"] < 0.01


def test_bayesian_engine_ships_a_clear_winner_and_keeps_running_an_aa():
    exp = experiment(analysis=BAYES, metrics={"primary": ["revenue"], "secondary": ["conversion"]})
    win, _ = results(exp, lift=0.08)
    row = by(win, metric="revenue", segment="all")
    assert row["bayes_call"] == "ship" and row["significant"] is True
    assert set(win.column("decision").to_pylist()) == {"ship"}
    aa, _ = results(exp, lift=0.0, seed=8)
    assert set(aa.column("decision").to_pylist()) == {"keep_running"}
    assert not any(
        by(aa, metric=m, segment="all")["significant"] for m in ("revenue", "conversion")
    )


def test_bayesian_engine_waits_for_the_risk_threshold():
    """A chance to win above 95% is not enough while the risk of shipping exceeds the threshold."""
    tiny_risk = Analysis(engine="bayesian", risk_threshold=1e-9)
    exp = experiment(analysis=tiny_risk, metrics={"primary": ["revenue"]})
    table, _ = results(exp, lift=0.04, n=3000)
    row = by(table, metric="revenue", segment="all")
    assert row["bayes_chance_to_win"] > 0.95 and row["bayes_risk_variant"] > 1e-9
    assert row["bayes_call"] == "keep_running" and row["decision"] == "keep_running"
    relaxed = experiment(analysis=Analysis(engine="bayesian"), metrics={"primary": ["revenue"]})
    assert set(results(relaxed, lift=0.04, n=3000)[0].column("decision").to_pylist()) == {"ship"}


def test_the_frequentist_engine_is_unchanged_by_the_bayesian_columns():
    """Same data, the default engine: significance is the adjusted p-value below alpha."""
    table, _ = results(experiment(), lift=0.04, n=3000)
    for r in table.to_pylist():
        if r["segment"] == "all" and r["role"] != "guardrail":
            assert r["significant"] == (r["p_value_adjusted"] < 0.05)
            assert r["bayes_call"] in {"ship", "rollback", "keep_running"}  # computed, unused


def test_the_json_and_text_faces_show_the_posterior_only_for_a_bayesian_experiment():
    from ab_pipelines.analysis.decision import AnalysisRule, MetricVerdict, Srm

    for exp, shown in ((experiment(analysis=BAYES), True), (experiment(), False)):
        table, _ = results(exp, lift=0.08)
        metrics = tuple(
            MetricVerdict.from_gold(r) for r in table.to_pylist() if r["segment"] == "all"
        )
        card = Scorecard(
            experiment_id="exp",
            as_of=DAY,
            status="running",
            decision=table.column("decision")[0].as_py(),
            srm=Srm(0.5, False, {"control": 6000, "treatment": 6000}),
            metrics=metrics,
            analysis=AnalysisRule.of(exp),
        )
        face = card.as_json()
        assert face["analysis"]["engine"] == exp.analysis.engine
        assert all(("bayesian" in m) == shown for m in face["metrics"])
        assert Scorecard.from_json(face).as_json() == face  # the face reads back
        text = render(face)
        assert ("engine: Bayesian" in text) == shown
        if shown:
            m = face["metrics"][0]["bayesian"]
            assert set(m) == {
                "effect",
                "ci_low",
                "ci_high",
                "chance_to_win",
                "risk_control",
                "risk_variant",
                "call",
            }
            assert f"{m['chance_to_win']:.1%}" in text


def test_ratio_metrics_get_a_posterior_on_their_ratio_of_means():
    exp = experiment(analysis=BAYES)
    table, arms = results(exp, load_lift=-0.05)
    row = by(table, metric="page_load_ms", segment="all")
    a = RatioMoments.from_values(*arms["control"]["page_load_ms"])
    b = RatioMoments.from_values(*arms["treatment"]["page_load_ms"])
    raw = (b.num_sum / b.den_sum) / (a.num_sum / a.den_sum) - 1
    assert row["bayes_effect"] == pytest.approx(row["cuped_rel_effect"], rel=1e-12)
    assert abs(row["bayes_effect"] - raw) < 0.03  # CUPED moves it a little from the raw ratio
    assert row["bayes_chance_to_win"] > 0.95  # faster pages win
