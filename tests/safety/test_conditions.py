"""conditions_for_day: each kind is read from its table; a healthy day yields none."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from ab_pipelines.lake.tables import GOLD_INTERACTIONS
from ab_pipelines.safety import CONDITION_KINDS, Condition, conditions_for_day, stopped_experiments
from tests.safety.factory import (
    DAY,
    experiment,
    healthy_day,
    registry,
    write_dq,
    write_exposures,
    write_health,
    write_kill,
    write_results,
    write_srm,
)


def kinds(conds: list[Condition]) -> list[str]:
    return [c.kind for c in conds]


def test_a_healthy_day_yields_no_condition(lake):
    exp = experiment()
    healthy_day(lake, exp, DAY)
    assert conditions_for_day(lake, registry(exp), DAY) == []


def test_missing_tables_read_as_empty(lake):
    # Nothing was ever written: only the running experiment's missing exposures show.
    conds = conditions_for_day(lake, registry(experiment()), DAY)
    assert kinds(conds) == ["no_exposures"]
    assert conditions_for_day(lake, registry(), DAY) == []


def test_guardrail_breach_carries_the_numbers_of_its_row(lake):
    exp = experiment()
    healthy_day(lake, exp, DAY)
    t = write_results(lake, exp, DAY, load_lift=0.3)
    row = next(r for r in t.to_pylist() if r["metric"] == "page_load_ms")
    assert row["guardrail_breached"]

    (c,) = conditions_for_day(lake, registry(exp), DAY)
    assert (c.kind, c.severity, c.experiment_id, c.subject) == (
        "guardrail_breach",
        "critical",
        "exp",
        "page_load_ms/treatment",
    )
    assert c.effect == pytest.approx(row["seq_rel_effect"])
    assert c.bound == pytest.approx(row["guardrail_bound"])
    assert c.margin == 0.05
    assert c.detail["variant"] == "treatment" and c.detail["baseline"] == "control"
    assert c.detail["decision"] == "rollback"
    # one human sentence naming the experiment, the metric and the numbers
    assert "exp" in c.message and "page_load_ms" in c.message and "treatment" in c.message
    assert f"{row['seq_rel_effect']:+.2%}" in c.message and "+5.00%" in c.message
    json.dumps(c.detail, allow_nan=False)


def test_guardrail_rows_of_other_days_and_segments_do_not_count(lake):
    exp = experiment()
    healthy_day(lake, exp, DAY)
    write_results(lake, exp, DAY - dt.timedelta(days=1), load_lift=0.3)
    assert conditions_for_day(lake, registry(exp), DAY) == []
    assert kinds(conditions_for_day(lake, registry(exp), DAY - dt.timedelta(days=1))) == [
        "guardrail_breach",
        "no_exposures",  # nothing was written for that day's exposures
    ]


def test_srm_is_detected_with_counts_and_p_value(lake):
    exp = experiment()
    healthy_day(lake, exp, DAY)
    write_srm(lake, exp, DAY, 3000, 2600)
    (c,) = conditions_for_day(lake, registry(exp), DAY)
    assert (c.kind, c.severity, c.experiment_id, c.subject) == ("srm", "critical", "exp", "")
    assert c.detail["counts"] == {"control": 3000, "treatment": 2600}
    assert 0 <= c.detail["p_value"] < 0.001
    assert "3000" in c.message and "2600" in c.message and "sample ratio mismatch" in c.message


def test_crossovers_are_a_warning(lake):
    exp = experiment()
    healthy_day(lake, exp, DAY)
    write_health(lake, exp, DAY, crossovers=400)
    (c,) = conditions_for_day(lake, registry(exp), DAY)
    assert (c.kind, c.severity, c.experiment_id, c.subject) == ("crossovers", "warning", "exp", "")
    assert c.detail["crossovers"] == 400
    assert "400 of 6400" in c.message


def test_failed_dq_checks_of_the_day(lake):
    exp = experiment()
    healthy_day(lake, exp, DAY)
    write_dq(lake, DAY, failing=("volume_band",))
    write_dq(lake, DAY - dt.timedelta(days=1), failing=("not_null",))  # another day
    (c,) = conditions_for_day(lake, registry(exp), DAY)
    assert (c.kind, c.severity, c.experiment_id, c.subject) == (
        "dq_failed",
        "critical",
        "",
        "bronze.exposures.volume_band",
    )
    assert "volume_band" in c.message and "bronze.exposures" in c.message and "1200" in c.message
    assert c.detail["observed"] == '{"rows":1200,"median":5000}'


def test_no_exposures_only_for_experiments_running_that_day(lake):
    running = experiment("running")
    quiet = experiment("quiet")
    later = experiment("later", start_date=DAY + dt.timedelta(days=1))
    ended = experiment("ended", end_date=DAY - dt.timedelta(days=1))
    stopped = experiment("stopped", status="stopped")
    draft = experiment("draft", status="draft")
    killed = experiment("killed")
    killed_later = experiment("killed_later")
    reg = registry(running, quiet, later, ended, stopped, draft, killed, killed_later)
    write_kill(lake, "killed", dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC))
    write_kill(lake, "killed_later", dt.datetime(2026, 3, 11, 0, 0, tzinfo=dt.UTC))
    write_exposures(lake, DAY, {"running": 100})
    write_exposures(lake, DAY - dt.timedelta(days=1), {"quiet": 100})  # not on DAY

    conds = conditions_for_day(lake, reg, DAY)
    assert [(c.kind, c.experiment_id, c.severity) for c in conds] == [
        ("no_exposures", "killed_later", "warning"),
        ("no_exposures", "quiet", "warning"),
    ]
    assert "quiet" in conds[1].message and str(DAY) in conds[1].message
    assert stopped_experiments(lake, reg, DAY) == {"stopped", "killed"}
    assert stopped_experiments(lake, reg, DAY + dt.timedelta(days=1)) == {
        "stopped",
        "killed",
        "killed_later",
    }


def write_interaction(lake, day, a: str, b: str) -> None:
    """One flagged gold.interactions row of the pair (a, b) on revenue (2 x 2 cells)."""
    row = {name: None for name in GOLD_INTERACTIONS.schema.names}
    arms = ["control", "treatment"]
    row.update(
        experiment_a=a,
        experiment_b=b,
        metric="revenue",
        values_from=a,
        variants_a=arms,
        variants_b=arms,
        cell_a=["control", "control", "treatment", "treatment"],
        cell_b=arms * 2,
        cell_n=[100, 100, 100, 100],
        cell_mean=[1.0, 1.0, 1.0, 2.0],
        p_value=1e-6,
        p_adjusted=1e-5,
        flagged=True,
        day=day,
    )
    lake.write_arrow(
        GOLD_INTERACTIONS, pa.Table.from_pylist([row], schema=GOLD_INTERACTIONS.schema)
    )


def test_every_kind_at_once_is_sorted_by_identity(lake):
    exp = experiment()
    other = experiment("other")
    write_results(lake, exp, DAY, load_lift=0.3)
    write_srm(lake, exp, DAY, 3000, 2600)
    write_health(lake, exp, DAY, crossovers=400)
    write_dq(lake, DAY, failing=("not_null", "unique_ids"))
    write_exposures(lake, DAY, {"exp": 10})
    write_interaction(lake, DAY, "exp", "other")
    conds = conditions_for_day(lake, registry(exp, other), DAY)
    assert sorted(set(kinds(conds))) == sorted(CONDITION_KINDS)
    assert [c.identity for c in conds] == sorted(c.identity for c in conds)
    assert len(conds) == 7
    (hit,) = [c for c in conds if c.kind == "interaction"]
    assert hit.experiment_id == "exp" and hit.subject == "other/revenue"
    assert "control/treatment n=100" in hit.message
