"""The decision, once (ab_pipelines.analysis.decision): each rule on small hand-built inputs, and
every face (the CLI's JSON and text, the dashboard's frames, the safety conditions) agreeing with
the one typed scorecard on the demo data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest
from click.testing import CliRunner

from ab_pipelines.analysis import decision as d
from ab_pipelines.analysis.decision import (
    Estimate,
    Guardrail,
    MetricVerdict,
    Scorecard,
    Srm,
    Standing,
)
from ab_pipelines.analysis.scorecard import read_scorecard, render, scorecard, to_json
from ab_pipelines.cli import main
from ab_pipelines.config import load_registry
from ab_pipelines.lake.delta import Lake
from ab_pipelines.safety import conditions_for_day
from streamlit_app import data
from tests.analysis.test_results import experiment
from tests.streamlit_app.demo_data import build_demo

RAW, CUP, SEQ = Estimate(0.01, -0.02, 0.04, 0.3), Estimate(0.02, 0.0, 0.04, 0.04), Estimate(0.02)


def verdict(**kw) -> MetricVerdict:
    base = dict(
        metric="revenue",
        role="primary",
        variant="treatment",
        baseline="control",
        segment="all",
        n_baseline=100,
        n_variant=100,
        mean_baseline=1.0,
        mean_variant=1.02,
        absolute=Estimate(),
        relative=RAW,
        cuped=d.Cuped(0.5, 0.3, Estimate(), CUP),
        sequential_absolute=Estimate(),
        sequential_relative=SEQ,
    )
    return MetricVerdict(**{**base, **kw})


# ---- which estimate ------------------------------------------------------------------------


def test_cuped_applies_with_a_pre_period_a_varying_covariate_and_a_number():
    assert d.cuped_applies(14, 1.0, 0.0, 0.1)
    assert not d.cuped_applies(0, 1.0, 1.0, 0.1)  # no lookback
    assert not d.cuped_applies(14, 0.0, 0.0, 0.1)  # the covariate is 0 for every unit
    assert not d.cuped_applies(14, 1.0, 1.0, np.nan)  # no CUPED number


def test_the_decision_reads_always_valid_when_sequential_else_fixed_cuped_or_raw():
    assert d.decision_estimate(RAW, CUP, SEQ, sequential=True) is SEQ
    assert d.decision_estimate(RAW, CUP, SEQ, sequential=False) is CUP
    assert d.decision_estimate(RAW, None, SEQ, sequential=False) is RAW
    v = verdict()
    assert v.fixed_relative is CUP and v.decision_relative(True) is SEQ
    assert verdict(cuped=None).decision_relative(False) is RAW


def test_the_view_a_reader_asks_for_is_labelled():
    v = verdict()
    assert v.view(True, True) == (SEQ, "always-valid, CUPED")
    assert v.view(False, True) == (SEQ, "always-valid, CUPED (raw not stored)")
    assert v.view(True, False) == (CUP, "fixed-horizon, CUPED")
    assert v.view(False, False) == (RAW, "fixed-horizon, raw")
    raw = verdict(cuped=None)
    assert raw.view(True, False) == (RAW, "fixed-horizon, raw (no pre-period)")
    assert raw.view(True, True) == (SEQ, "always-valid, raw")


# ---- the family, guardrails and direction ----------------------------------------------------


def test_the_family_is_primary_and_secondary_of_segment_all():
    assert d.in_family("primary", "all") and d.in_family("secondary", "all")
    assert not d.in_family("guardrail", "all") and not d.in_family("primary", "platform=ios")


def test_adjust_by_the_correction_and_significance_below_alpha():
    assert d.adjust([0.01, 0.04], "none") == [0.01, 0.04]
    assert d.adjust([0.01, 0.04], "holm") == pytest.approx([0.02, 0.04])
    assert d.adjust([0.01, None], "bh")[1] is None
    assert d.is_significant(0.049, 0.05) and not d.is_significant(0.05, 0.05)
    assert not d.is_significant(None, 0.05)


def test_a_p_value_of_exactly_zero_is_the_most_significant_not_missing():
    """An effect so large that the normal tail underflows gives p = 0.0: it must stay 0 through
    the correction and count as significant (it was once read as missing, silently)."""
    from scipy import stats

    p0 = float(stats.norm.sf(40.0))
    assert p0 == 0.0
    for correction in ("none", "holm", "bh"):
        adj = d.adjust([p0, 0.03, None], correction)
        assert adj[0] == 0.0 and adj[2] is None, (correction, adj)
        assert d.is_significant(adj[0], 0.05)


def test_guardrail_non_inferiority_reads_the_harm_side_bound():
    # lower is better (page load): harm is an increase; the bound is the interval's low end
    assert d.guardrail_check(0.02, 0.03, 0.05, False) == Guardrail(0.02, 0.03, True)
    assert d.guardrail_check(0.02, 0.01, 0.05, False) == Guardrail(0.02, 0.01, False)
    # higher is better: harm is a decrease; the bound is the high end
    assert d.guardrail_check(0.02, -0.09, -0.03, True) == Guardrail(0.02, -0.03, True)
    assert d.guardrail_check(0.02, None, None, True) == Guardrail(0.02, None, False)


def test_better_follows_the_metric_direction():
    assert d.better(0.1, True) is True and d.better(0.1, False) is False
    assert d.better(-0.1, False) is True
    assert d.better(0.0, True) is None and d.better(None, True) is None


# ---- the rule ------------------------------------------------------------------------------


def standing(**kw) -> Standing:
    base = dict(
        metric="revenue",
        role="primary",
        variant="treatment",
        significant=True,
        better=True,
        breached=False,
    )
    return Standing(**{**base, **kw})


@pytest.mark.parametrize(
    ("rows", "srm", "ended", "want"),
    [
        ([standing()], True, False, "invalid"),  # SRM beats everything
        ([standing(), standing(role="guardrail", breached=True)], False, False, "rollback"),
        ([standing(better=False)], False, False, "rollback"),
        ([standing()], False, False, "ship"),
        ([standing(significant=False)], False, False, "keep_running"),
        ([standing(significant=False)], False, True, "inconclusive"),
        ([standing(role="secondary")], False, False, "keep_running"),  # no primary: never ships
        ([], False, True, "inconclusive"),
    ],
)
def test_the_decision_rule_first_match_wins(rows, srm, ended, want):
    assert d.decide(experiment(), rows, srm, ended) == want


def test_ship_needs_one_variant_to_win_on_every_primary():
    exp = experiment(
        variants=[{"id": v, "weight": 1 / 3} for v in ("control", "a", "b")],
        metrics={"primary": ["revenue", "conversion"]},
    )
    split = [
        standing(variant="a", metric="revenue"),
        standing(variant="a", metric="conversion", significant=False),
        standing(variant="b", metric="revenue", significant=False),
        standing(variant="b", metric="conversion"),
    ]
    assert d.decide(exp, split, False, False) == "keep_running"
    both = [*split[:1], standing(variant="a", metric="conversion"), *split[2:]]
    assert d.decide(exp, both, False, False) == "ship"


def test_a_verdict_stands_for_the_rule_with_its_direction():
    v = verdict(significant=True, guardrail=Guardrail(0.05, 0.01, False))
    assert v.standing(True) == standing()
    assert v.standing(False).better is False
    assert verdict(guardrail=Guardrail(0.05, 0.09, True)).standing(True).breached


def test_srm_of_a_segment():
    rows = [
        {"variant": "control", "units": 10, "p_value": 0.0001, "flagged": True},
        {"variant": "treatment", "units": 30, "p_value": 0.0001, "flagged": True},
    ]
    assert Srm.from_gold(rows) == Srm(0.0001, True, {"control": 10, "treatment": 30})
    assert Srm.from_gold([]) == Srm(None, False, {})


# ---- the scorecard and its faces ------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("decision"))


@pytest.fixture
def demo_lake(demo):
    return Lake(demo.home)


@pytest.fixture
def demo_registry(demo):
    return load_registry(demo.registry_root)


def test_the_json_face_round_trips_and_reads_as_a_mapping(demo_lake, demo_registry):
    for exp_id in ("hero_video", "search_speed", "checkout_cta"):
        card = read_scorecard(demo_lake, demo_registry, exp_id)
        face = card.as_json()
        assert Scorecard.from_json(face) == card and card == face
        assert dict(card) == face and card["decision"] == card.decision
        assert json.loads(to_json(card)) == json.loads(json.dumps(face, default=str))
        assert render(card) == render(face)
        with pytest.raises(dataclasses.FrozenInstanceError):
            card.decision = "ship"  # type: ignore[misc]


def test_every_face_agrees_with_the_one_scorecard(demo, demo_lake, demo_registry, monkeypatch):
    monkeypatch.setenv("ABP_HOME", str(demo.home.home))
    monkeypatch.setenv("ABP_REGISTRY", str(demo.registry_root))
    overview = data.experiments_overview(demo_lake, demo_registry).set_index("experiment")
    for exp_id in ("hero_video", "search_speed", "checkout_cta", "recs_ranking"):
        card = read_scorecard(demo_lake, demo_registry, exp_id)
        exp = demo_registry.experiments[exp_id]
        # the CLI's JSON and text are the object's faces
        out = CliRunner().invoke(main, ["results", exp_id, "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output) == json.loads(to_json(card))
        assert json.loads(out.output) == json.loads(
            to_json(scorecard(demo_lake, demo_registry, exp_id))
        )
        text = CliRunner().invoke(main, ["results", exp_id]).output
        assert text.rstrip("\n") == render(card)
        # the dashboard: the overview's decision, units and lead lift; the scorecard frame
        assert overview.loc[exp_id, "decision"] == card.decision
        assert overview.loc[exp_id, "units"] == sum(card.srm.counts.values())
        assert overview.loc[exp_id, "srm"] == ("flagged" if card.srm.flagged else "ok")
        lead = card.metrics[0].decision_relative(exp.analysis.sequential)
        assert overview.loc[exp_id, "lift"] == pytest.approx(lead.effect)
        guards = card.guardrails
        if guards:
            want = "breached" if any(g.breached for g in guards) else "ok"
            assert overview.loc[exp_id, "guardrails"] == want
        frame = data.scorecard_rows(card, demo_registry.metrics, True, exp.analysis.sequential)
        for row, v in zip(frame.to_dict("records"), card.metrics, strict=True):
            est, label = v.view(True, exp.analysis.sequential)
            assert (row["metric"], row["variant"], row["estimate"]) == (v.metric, v.variant, label)
            assert row["lift"] == pytest.approx(est.effect, nan_ok=True)
            if v.p_value_adjusted is not None:  # the frame shows None as NaN
                assert row["p_value_adjusted"] == pytest.approx(v.p_value_adjusted)
        # the safety conditions: a guardrail condition for each breach, an SRM one when flagged
        day = dt.date.fromisoformat(card["as_of"])
        conds = [
            c
            for c in conditions_for_day(demo_lake, demo_registry, day)
            if c.experiment_id == exp_id
        ]
        breaches = {c.subject: c for c in conds if c.kind == "guardrail_breach"}
        assert set(breaches) == {f"{v.metric}/{v.variant}" for v in card.breaches}
        for v in card.breaches:
            c = breaches[f"{v.metric}/{v.variant}"]
            assert c.effect == pytest.approx(v.sequential_relative.effect)
            assert (c.bound, c.margin) == (v.guardrail.bound, v.guardrail.margin)
            assert c.detail["decision"] == card.decision
        assert any(c.kind == "srm" for c in conds) == card.srm.flagged
    assert read_scorecard(demo_lake, demo_registry, "hero_video").breaches  # the planted breach
    assert read_scorecard(demo_lake, demo_registry, "recs_ranking").decision == "invalid"
