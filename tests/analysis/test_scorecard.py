"""`abp results` and `abp plan` read the gold tables (written here by the numpy step, no Spark)."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from ab_pipelines.analysis.plan import PlanError, plan
from ab_pipelines.analysis.results import experiment_results, srm_rows
from ab_pipelines.analysis.scorecard import ScorecardError, render, scorecard, to_json
from ab_pipelines.cli import main
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import GOLD_EXPERIMENT_RESULTS, GOLD_SRM, GOLD_SUFFICIENT_STATS
from ab_pipelines.stats import sample_size
from tests.analysis.test_results import arm_values, stats_table

EXP = "checkout_cta"
D1, D2 = dt.date(2026, 11, 8), dt.date(2026, 11, 10)
FOUR = {"effect", "ci_low", "ci_high", "p_value"}


def gold_rows(day: dt.date, n: int, rng, lift: float, segment: str = "all") -> pa.Table:
    arms = {}
    for variant, lift_ in (("control", 0.0), ("treatment", lift)):
        vals = arm_values(rng, n, lift=lift_)
        vals["orders"] = vals["conversion"]
        vals["revenue_per_order"] = vals["page_load_ms"]
        arms[variant] = vals
    return stats_table(arms, segment=segment, exp_id=EXP, day=day)


@pytest.fixture
def analysed(home, registry):
    """Two analysed days of checkout_cta in the gold tables (day 2 with an exploratory segment)."""
    lake, rng = Lake(home), np.random.default_rng(11)
    exp = registry.experiments[EXP]
    for day, n in ((D1, 2000), (D2, 3000)):
        stats = gold_rows(day, n, rng, lift=0.2)
        if day == D2:
            stats = pa.concat_tables([stats, gold_rows(day, 800, rng, 0.2, "platform=ios")])
        srm = srm_rows(exp, day, {"all": {"control": n, "treatment": n}})
        results = experiment_results(exp, registry.metrics, day, stats, False)
        replace = [{"day": day.isoformat()}]
        lake.write_arrow(GOLD_SUFFICIENT_STATS, stats, replace=replace)
        lake.write_arrow(GOLD_SRM, srm, replace=replace)
        lake.write_arrow(GOLD_EXPERIMENT_RESULTS, results, replace=replace)
    return lake


def test_the_scorecard_follows_the_contract(analysed, registry):
    card = scorecard(analysed, registry, EXP)
    assert card["as_of"] == D2.isoformat() and card["status"] == "running"
    assert card["decision"] in {"keep_running", "ship", "rollback", "inconclusive", "invalid"}
    assert card["srm"] == {
        "p_value": 1.0,
        "flagged": False,
        "counts": {"control": 3000, "treatment": 3000},
    }
    roles = [(m["metric"], m["role"]) for m in card["metrics"]]
    assert roles == [
        ("conversion", "primary"),
        ("revenue", "secondary"),
        ("orders", "secondary"),
        ("page_load_ms", "guardrail"),
    ]
    for m in card["metrics"]:
        assert m["variant"] == "treatment" and m["baseline"] == "control"
        assert set(m["n"]) == {"control", "treatment"} and set(m["mean"]) == {
            "control",
            "treatment",
        }
        assert set(m["absolute"]) == FOUR and set(m["relative"]) == FOUR
        assert set(m["sequential"]) == {"absolute", "relative"}
        assert set(m["cuped"]) == {"theta", "variance_reduction", "absolute", "relative"}
        assert set(m["cuped"]["relative"]) == FOUR
        assert ("guardrail" in m) == (m["role"] == "guardrail")
        assert (m["p_value_adjusted"] is None) == (m["role"] == "guardrail")
    assert set(card["metrics"][-1]["guardrail"]) == {"margin", "bound", "breached"}
    assert card["segments"][0]["segment"] == "platform=ios"
    assert card["segments"][0]["exploratory"] is True
    json.loads(to_json(card))
    # an older day, by date
    assert scorecard(analysed, registry, EXP, D1)["srm"]["counts"]["control"] == 2000
    # the plan: checkout_cta has mde 0.05 on conversion
    (p,) = card["plan"]
    assert p["metric"] == "conversion" and p["mde_target"] == 0.05
    assert p["units_per_arm_needed"] > 0 and p["days_more"] is not None


def test_the_text_scorecard_labels_the_fixed_horizon_p(analysed, registry):
    text = render(scorecard(analysed, registry, EXP))
    assert "decision:" in text and "fixed p" in text and "always-valid" in text
    assert "conversion" in text and "guardrail" in text and "exploratory" in text


def test_clear_errors_for_unknown_or_unanalysed(analysed, registry):
    with pytest.raises(ScorecardError, match="no experiment 'nope'"):
        scorecard(analysed, registry, "nope")
    with pytest.raises(ScorecardError, match="no results for 2026-11-09; analysed days"):
        scorecard(analysed, registry, EXP, dt.date(2026, 11, 9))
    with pytest.raises(ScorecardError, match="has not been analysed yet"):
        scorecard(analysed, registry, "homepage_aa")


def test_abp_results_json_and_exit_codes(analysed):
    runner = CliRunner()
    out = runner.invoke(main, ["results", EXP, "--json"])
    assert out.exit_code == 0, out.output
    card = json.loads(out.output)
    assert card["experiment_id"] == EXP and "NaN" not in out.output
    out = runner.invoke(main, ["results", EXP, "--date", "2026-11-08"])
    assert out.exit_code == 0 and "as of 2026-11-08" in out.output
    out = runner.invoke(main, ["results", EXP, "--date", "08/11/2026"])
    assert out.exit_code == 2 and "not a date" in out.output
    out = runner.invoke(main, ["results", "nope"])
    assert out.exit_code == 2 and "no experiment 'nope'" in out.output


def test_plan_from_measured_variance_and_traffic(analysed, registry):
    p = plan(analysed, registry, "revenue", 0.05)
    rows = [
        r
        for r in analysed.read_arrow(GOLD_SUFFICIENT_STATS).to_pylist()
        if r["metric"] == "revenue" and r["segment"] == "all" and r["day"] == D2
    ]
    n = sum(r["n"] for r in rows)
    s, ss = sum(r["num_sum"] for r in rows), sum(r["num_sum_sq"] for r in rows)
    mean, var = s / n, (ss - s * s / n) / (n - 1)
    assert p.mean == pytest.approx(mean) and p.variance == pytest.approx(var)
    assert p.units_per_arm == sample_size(mean, var, 0.05)
    # growth 4000 -> 6000 units over 2 days, in a layer half: 2000 eligible units a day
    assert p.eligible_units_per_day == pytest.approx(2000.0)
    assert p.days == int(np.ceil(p.units_per_arm / 1000.0))
    assert "days needed" in p.render()
    with pytest.raises(PlanError, match="no metric 'nope'"):
        plan(analysed, registry, "nope", 0.05)
    out = CliRunner().invoke(main, ["plan", "--metric", "revenue", "--mde", "0.05", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["units_per_arm"] == p.units_per_arm


def test_plan_needs_measured_data(home, registry):
    with pytest.raises(PlanError, match="no analysed data yet"):
        plan(Lake(home), registry, "revenue", 0.05)


def test_plan_refuses_a_quantile_metric(home, registry):
    assert registry.metrics["page_load_p90"].kind == "quantile"
    with pytest.raises(PlanError, match="page_load_p90 is a quantile metric"):
        plan(Lake(home), registry, "page_load_p90", 0.05)


def _recompute(lake: Lake, registry, day: dt.date, n: int, seed: int) -> None:
    exp, rng = registry.experiments[EXP], np.random.default_rng(seed)
    stats = gold_rows(day, n, rng, lift=0.0)
    replace = [{"day": day.isoformat()}]
    lake.write_arrow(GOLD_SUFFICIENT_STATS, stats, replace=replace)
    lake.write_arrow(
        GOLD_SRM, srm_rows(exp, day, {"all": {"control": n, "treatment": n}}), replace=replace
    )
    lake.write_arrow(
        GOLD_EXPERIMENT_RESULTS,
        experiment_results(exp, registry.metrics, day, stats, False),
        replace=replace,
    )


def test_a_scorecard_can_be_read_again_as_it_was_computed(analysed, registry):
    """Issue 9, part 6: after a re-analysis, the earlier scorecard is still there, exactly."""
    from ab_pipelines.analysis.scorecard import pinned_versions

    before = scorecard(analysed, registry, EXP, D2)
    v_before = analysed.version(GOLD_EXPERIMENT_RESULTS)
    t_before = analysed.history(GOLD_EXPERIMENT_RESULTS)[v_before]
    _recompute(analysed, registry, D2, 5000, seed=99)  # D2 re-analysed with other data
    now = scorecard(analysed, registry, EXP, D2)
    assert now["srm"]["counts"]["control"] == 5000 and now != before

    by_version = scorecard(analysed, registry, EXP, D2, pinned_versions(analysed, v_before))
    by_time = scorecard(analysed, registry, EXP, D2, pinned_versions(analysed, at=t_before))
    for card in (by_version, by_time):
        pins = card.pop("read_at_versions")
        assert pins[GOLD_EXPERIMENT_RESULTS.qualified] == v_before
        assert card == before  # every number, the plan and the segments included
    # the first version only knew D1
    first = pinned_versions(analysed, min(analysed.history(GOLD_EXPERIMENT_RESULTS)))
    assert scorecard(analysed, registry, EXP, None, first)["as_of"] == D1.isoformat()

    runner = CliRunner()
    out = runner.invoke(main, ["results", EXP, "--date", str(D2), "--version", str(v_before)])
    assert out.exit_code == 0, out.output
    assert "units 3000/3000" in out.output and "as computed then" in out.output
    out = runner.invoke(main, ["results", EXP, "--as-of", t_before.isoformat(), "--json"])
    assert json.loads(out.output)["srm"]["counts"]["control"] == 3000
    out = runner.invoke(main, ["results", EXP, "--version", "999"])
    assert out.exit_code == 2 and "has no version 999 (readable versions: 0.." in out.output
    out = runner.invoke(main, ["results", EXP, "--as-of", "2020-01-01T00:00:00Z"])
    assert out.exit_code == 2 and "nothing had been analysed yet" in out.output
    out = runner.invoke(main, ["results", EXP, "--as-of", "2026-11-05T08:00"])
    assert out.exit_code == 2 and "has no zone" in out.output


def test_a_past_day_shows_the_plan_it_was_computed_under(home, registry_copy):
    """Rows stamped with the registry sha and config version of their day: the scorecard shows
    them, and says so once the experiment's definition has changed since."""
    from ab_pipelines.analysis.scorecard import read_scorecard
    from ab_pipelines.analysis.state import experiment_state, with_provenance
    from ab_pipelines.config import load_registry

    registry = load_registry(registry_copy)
    lake, rng = Lake(home), np.random.default_rng(5)
    exp = registry.experiments[EXP]
    state = experiment_state(lake, registry, EXP, D1)
    stats = gold_rows(D1, 2000, rng, lift=0.1)
    results = experiment_results(exp, registry.metrics, D1, stats, False)
    replace = [{"day": D1.isoformat()}]
    lake.write_arrow(GOLD_SUFFICIENT_STATS, with_provenance(stats, state), replace=replace)
    lake.write_arrow(GOLD_EXPERIMENT_RESULTS, with_provenance(results, state), replace=replace)

    card = read_scorecard(lake, registry, EXP, D1)
    assert card.provenance.registry_sha == state.registry_sha
    assert card.provenance.config_version == state.config_version
    assert card.provenance.changed_since is False
    assert f"plan: registry sha {state.registry_sha[:12]}" in render(card)
    assert json.loads(to_json(card))["provenance"]["changed_since"] is False

    path = registry_copy / "experiments" / f"{EXP}.yaml"
    path.write_text(path.read_text().replace("Clearer copy", "Shorter copy"))
    changed = load_registry(registry_copy)
    card = read_scorecard(lake, changed, EXP, D1)
    assert card.provenance.registry_sha == state.registry_sha  # the day's, not today's
    assert card.provenance.changed_since is True
    assert "the plan has changed since" in render(card)


def test_the_kill_record_is_on_the_card_as_known_at_the_read(analysed, home, registry_copy):
    """Every card read after a kill carries the kill record (when, by whom, why), whichever day
    it is of; a card read as it was before the kill (pinned) does not."""
    from ab_pipelines.analysis.scorecard import pinned_versions
    from ab_pipelines.config import load_registry
    from ab_pipelines.config.publish import kill, publish

    registry = load_registry(registry_copy)
    noon = dt.datetime.combine(D2 + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    publish(home, registry_copy, now=noon - dt.timedelta(days=3))
    before_kill = dt.datetime.now(dt.UTC)
    # Delta's commit times are in milliseconds: a kill committed within the same millisecond
    # would count as at or before ``before_kill`` (seen once on a fresh clone).
    time.sleep(0.005)
    kill(home, EXP, reason="harm", by="ops@example.com", now=noon)
    for day in (D1, D2):
        card = scorecard(analysed, registry, EXP, day)
        assert card["killed"] == {"at": noon.isoformat(), "by": "ops@example.com", "reason": "harm"}
    then = scorecard(analysed, registry, EXP, D2, pinned_versions(analysed, at=before_kill))
    assert then["killed"] is None


def test_units_still_maturing_are_on_the_scorecard(home, registry):
    """A windowed metric's units whose window has not ended are counted in gold.sufficient_stats
    (``maturing``), carried to the results and shown: JSON ``maturing`` per arm, a text line."""
    lake, rng = Lake(home), np.random.default_rng(5)
    exp = registry.experiments[EXP]
    stats = gold_rows(D1, 1500, rng, lift=0.0).to_pylist()
    for r in stats:
        r["maturing"] = (
            {"control": 120, "treatment": 131}[r["variant"]] if r["metric"] == "orders" else 0
        )
    stats = pa.Table.from_pylist(stats, schema=GOLD_SUFFICIENT_STATS.schema)
    results = experiment_results(exp, registry.metrics, D1, stats, False)
    replace = [{"day": D1.isoformat()}]
    lake.write_arrow(GOLD_SUFFICIENT_STATS, stats, replace=replace)
    lake.write_arrow(
        GOLD_SRM, srm_rows(exp, D1, {"all": {"control": 1500, "treatment": 1500}}), replace=replace
    )
    lake.write_arrow(GOLD_EXPERIMENT_RESULTS, results, replace=replace)
    card = scorecard(lake, registry, EXP)
    by_metric = {m["metric"]: m for m in card["metrics"]}
    assert by_metric["orders"]["maturing"] == {"control": 120, "treatment": 131}
    assert "maturing" not in by_metric["conversion"]
    assert "maturing: orders (treatment) leaves out 120/131 units" in render(card)
