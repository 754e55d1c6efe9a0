"""The holdout scorecard (issue 25, part 5): a holdout is analysed as an experiment of its two
groups, ``holdout`` (baseline) and ``general``, from the exposures the SDK logs under its id
(rule 8b), and ``abp results <holdout>`` shows the cumulative effect (numpy step; the Spark side
treats its exposures as any experiment's: the demo runs it end to end)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
from click.testing import CliRunner

from ab_pipelines.analysis.day import results_day
from ab_pipelines.analysis.results import srm_rows
from ab_pipelines.analysis.scorecard import read_scorecard, render
from ab_pipelines.cli import main
from ab_pipelines.config import load_registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    OPS_EXPERIMENT_DAYS,
)
from ab_pipelines.stats import Moments, compare
from tests.analysis.test_results import arm_values, stats_table
from tests.config.test_holdouts import _holdout

DAY = dt.date(2026, 11, 6)


def test_a_holdout_gets_results_and_a_scorecard_of_general_against_holdout(
    home, registry_copy, monkeypatch
):
    _holdout(registry_copy, "longterm", extra="")
    monkeypatch.setenv("ABP_REGISTRY", str(registry_copy))
    registry = load_registry(registry_copy)
    lake = Lake(home)
    rng = np.random.default_rng(4)
    # conversion is the holdout's primary metric (tests/config/test_holdouts.py::_holdout)
    arms = {"holdout": arm_values(rng, 3000), "general": arm_values(rng, 3000, lift=0.15)}
    stats = stats_table(arms, exp_id="longterm", day=DAY)
    stats = stats.filter(pa.compute.equal(stats.column("metric"), "conversion"))
    replace = [{"day": DAY.isoformat()}]
    lake.write_arrow(GOLD_SUFFICIENT_STATS, stats, replace=replace)
    exp = registry.analysed_experiments["longterm"]
    lake.write_arrow(
        GOLD_SRM, srm_rows(exp, DAY, {"all": {"holdout": 3000, "general": 3000}}), replace=replace
    )
    summary = results_day(lake, registry, DAY)
    assert "longterm" in summary.decisions

    rows = lake.read_arrow(GOLD_EXPERIMENT_RESULTS).to_pylist()
    (row,) = [r for r in rows if r["experiment_id"] == "longterm"]
    assert (row["baseline"], row["variant"], row["metric"]) == ("holdout", "general", "conversion")
    by = {r["variant"]: r for r in stats.to_pylist()}
    want = compare(
        *(
            Moments(by[v]["n"], by[v]["num_sum"], by[v]["num_sum_sq"])
            for v in ("holdout", "general")
        ),
        relative=True,
    )
    assert row["rel_effect"] == want.effect and row["registry_sha"]
    state = [
        r
        for r in lake.read_arrow(OPS_EXPERIMENT_DAYS).to_pylist()
        if r["experiment_id"] == "longterm"
    ]
    assert state and state[0]["variants"] == ["holdout", "general"]

    card = read_scorecard(lake, registry, "longterm", DAY)
    assert [m.variant for m in card.metrics] == ["general"]
    assert "longterm" in render(card)
    out = CliRunner().invoke(main, ["results", "longterm", "--json"])
    assert out.exit_code == 0, out.output
    face = json.loads(out.output)
    assert face["experiment_id"] == "longterm" and face["metrics"][0]["baseline"] == "holdout"
