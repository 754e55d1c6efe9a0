"""Regression adjustment in the pipeline: the SQL sums against numpy on the per-unit values, the
results columns against compare_adjusted on those sums, nothing for experiments without
covariates, and the registry's rule for analysis.covariates (docs/analysis.md, "In the pipeline")."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import yaml

from ab_pipelines.analysis.regression_stats import (
    RegressionInputs,
    regression_day,
    regression_design,
    write_regression_stats,
)
from ab_pipelines.analysis.results import experiment_results
from ab_pipelines.analysis.state import states_of_day
from ab_pipelines.analysis.sufficient_stats import experiment_models, experiment_stats
from ab_pipelines.config import load_registry
from ab_pipelines.config.validate import validate_registry
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import GOLD_REGRESSION_STATS
from ab_pipelines.settings import REPO_ROOT, paths
from ab_pipelines.simulate import simulate_days
from ab_pipelines.stats import RegressionMoments, compare_adjusted

START, DAYS, HISTORY = dt.date(2026, 11, 2), 3, 3
DAY = START + dt.timedelta(days=DAYS - 1)
# homepage_aa has no segments (attributes read from the exposures), a ratio metric as a
# covariate and windowed metrics; search_speed has segments (attributes on analysed_units).
COVARIATES = {
    "homepage_aa": ["orders", "revenue_per_order", {"attribute": "platform"}],
    "search_speed": ["conversion", "attribute:platform", "attribute:country"],
}
WITHOUT = "recs_ranking"


def _copy_registry(root, covariates):
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    for exp_id, covs in covariates.items():
        path = root / "experiments" / f"{exp_id}.yaml"
        exp = yaml.safe_load(path.read_text())
        exp.setdefault("analysis", {})["covariates"] = covs
        exp.pop("approvals", None)  # content changed: these tests do not validate approvals
        exp["status"] = "running"
        path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def covariate_registry(tmp_path_factory):
    root = _copy_registry(tmp_path_factory.mktemp("registry"), COVARIATES)
    reg = load_registry(root)
    assert not reg.experiments[WITHOUT].analysis.covariates
    return reg


@pytest.fixture(scope="module")
def lake(tmp_path_factory, spark, covariate_registry):
    home = paths(tmp_path_factory.mktemp("regression"))
    reg = covariate_registry
    simulate_days(home, START, DAYS, users=1500, seed=5, registry=reg, history_days=HISTORY)
    lake = Lake(home)
    for i in range(-HISTORY, DAYS + 1):
        land_day(spark, lake, home.raw, START + dt.timedelta(days=i), reg.known_variants())
    return lake


# ---- numpy on the per-unit values ---------------------------------------------------------------


def _first_attributes(exposures: pd.DataFrame, units: pd.Series) -> pd.Series:
    """unit -> attributes of its first in-window exposure (earliest ts, then smaller event_id)."""
    first = exposures.sort_values(["ts", "event_id"]).groupby("unit").first()["attributes"]
    return first.reindex(units)


def _attribute_value(text, name: str) -> str:
    value = json.loads(text).get(name) if isinstance(text, str) else None
    if value is None:
        return "(missing)"
    return value if isinstance(value, str) else json.dumps(value)


def _expected(exp, metrics, out) -> dict[tuple[str, str], tuple[list[str], RegressionMoments]]:
    """(metric, variant) -> (covariate names, moments), computed in pandas and numpy."""
    values = out["metric_values"].toPandas()
    units = out["analysed_units"].select("unit", "variant").toPandas()
    exposures = out["in_window_exposures"].toPandas()
    attrs = _first_attributes(exposures, units["unit"])
    design = pd.DataFrame({"unit": units["unit"].to_numpy()})
    covs: list[tuple[str | None, str, np.ndarray]] = []  # (metric it is, name, per-unit values)
    for mid in exp.analysis.covariate_metrics:
        pre = values[values.metric == mid].set_index("unit").reindex(design.unit)
        two = metrics[mid].kind == "ratio"
        covs.append((mid, f"pre_{mid}_num" if two else f"pre_{mid}", pre.pre_num.to_numpy()))
        if two:
            covs.append((mid, f"pre_{mid}_den", pre.pre_den.to_numpy()))
    for name in exp.analysis.covariate_attributes:
        level = np.array([_attribute_value(a, name) for a in attrs.to_numpy()], dtype=object)
        counts = pd.Series(level).value_counts()
        ranked = sorted(counts.index, key=lambda v: (-counts[v], v))
        for v in ranked[: exp.analysis.segment_top_n]:
            covs.append((None, f"{name}={v}", (level == v).astype(float)))
    index = {u: i for i, u in enumerate(design.unit)}
    out_: dict = {}
    for m in (metrics[i] for i in dict.fromkeys(exp.metric_ids())):
        if m.kind == "quantile":
            continue
        v = values[(values.metric == m.id) & values.mature]
        rows = v.unit.map(index).to_numpy()
        ratio = m.kind == "ratio"
        own = [f"pre_{m.id}_num", f"pre_{m.id}_den"] if ratio else [f"pre_{m.id}"]
        mine = [c for c in covs if c[0] != m.id]
        names = own + [c[1] for c in mine]
        for variant in exp.variant_ids:
            sel = (v.variant == variant).to_numpy()
            X = np.column_stack(
                [v.pre_num.to_numpy()[sel]]
                + ([v.pre_den.to_numpy()[sel]] if ratio else [])
                + [c[2][rows[sel]] for c in mine]
            )
            y = [v.num.to_numpy()[sel]] + ([v.den.to_numpy()[sel]] if ratio else [])
            z = np.column_stack([*y, X]) if sel.any() else np.zeros((0, len(y) + len(names)))
            moments = RegressionMoments(int(sel.sum()), z.sum(0), z.T @ z, responses=len(y))
            out_[(m.id, variant)] = (names, moments)
    return out_


def _rows(table) -> dict:
    return {(r["metric"], r["variant"]): r for r in table.to_pylist()}


@pytest.mark.spark
@pytest.mark.slow
def test_the_sql_sums_are_the_per_unit_values_summed(spark, lake, covariate_registry):
    reg = covariate_registry
    tables = regression_day(spark, lake, reg, DAY)
    with_covariates = {e for e, x in reg.analysed_experiments.items() if x.analysis.covariates}
    assert set(tables) == with_covariates  # recs_ranking and the others: nothing ran
    states = states_of_day(lake, reg, DAY, holdouts=True)
    checked = 0
    for exp_id in COVARIATES:
        exp = reg.experiments[exp_id]
        with experiment_models(spark, lake, reg, exp_id, DAY, states[exp_id].killed_at) as out:
            expected = _expected(exp, reg.metrics, out)
        got = _rows(tables[exp_id])
        assert set(got) == set(expected)
        for key, (names, m) in expected.items():
            r = got[key]
            p = len(r["sums"])
            assert r["covariates"] == names, key
            assert r["segment"] == "all" and r["responses"] == m.responses and r["n"] == m.n
            np.testing.assert_allclose(r["sums"], m.sums, rtol=1e-9, atol=1e-9, err_msg=str(key))
            cross = np.reshape(r["cross"], (p, p))
            np.testing.assert_allclose(cross, m.cross, rtol=1e-9, atol=1e-9, err_msg=str(key))
            checked += m.n
    assert checked > 1000
    # the attribute dummies are there, ranked, on both paths (exposures and analysed_units)
    assert any(
        "platform=" in c for c in _rows(tables["homepage_aa"])[("revenue", "a")]["covariates"]
    )
    names = _rows(tables["search_speed"])[("conversion", "control")]["covariates"]
    assert sum(c.startswith("country=") for c in names) >= 2


@pytest.mark.spark
@pytest.mark.slow
def test_results_columns_are_compare_adjusted_on_the_stored_sums(spark, lake, covariate_registry):
    reg = covariate_registry
    inputs = RegressionInputs(spark, reg, DAY)  # the daily path: write_day's keep callback
    stats = {
        e: experiment_stats(spark, lake, reg, e, DAY, keep=inputs.keep).stats
        for e in (*COVARIATES, WITHOUT)
    }
    assert set(inputs.tables) == set(COVARIATES)  # none for an experiment without covariates
    states = states_of_day(lake, reg, DAY, holdouts=True)
    written = inputs.write(lake, states)
    stored = lake.read_arrow(GOLD_REGRESSION_STATS, filter=pc.field("day") == DAY)
    assert stored.num_rows == written.num_rows == sum(t.num_rows for t in inputs.tables.values())
    assert set(stored.column("registry_sha").to_pylist()) == {
        states[e].registry_sha for e in COVARIATES
    }
    for exp_id in COVARIATES:
        exp = reg.experiments[exp_id]
        mine = stored.filter(pc.field("experiment_id") == exp_id)
        res = experiment_results(exp, reg.metrics, DAY, stats[exp_id], False, regression=mine)
        plain = experiment_results(exp, reg.metrics, DAY, stats[exp_id], False)
        rows, compared = _rows(mine), 0
        for r in res.to_pylist():
            base, arm = rows.get((r["metric"], exp.baseline)), rows.get((r["metric"], r["variant"]))
            if r["segment"] != "all" or base is None or base["n"] < 3 or arm["n"] < 3:
                assert r["adj_covariates"] is None or r["segment"] == "all"
                continue
            a, b = (_moments(x) for x in (base, arm))
            for prefix, rel in (("adj_abs", False), ("adj_rel", True)):
                c = compare_adjusted(a, b, relative=rel, alpha=exp.analysis.alpha)
                for field in ("effect", "ci_low", "ci_high", "p_value"):
                    assert r[f"{prefix}_{field}"] == pytest.approx(getattr(c, field), rel=1e-12)
            c = compare_adjusted(a, b, relative=True, alpha=exp.analysis.alpha)
            assert r["adj_variance_reduction"] == pytest.approx(c.variance_reduction, rel=1e-12)
            kept = [
                n for n, t in zip(base["covariates"], np.atleast_1d(c.theta), strict=True) if t != 0
            ]
            assert r["adj_covariates"] == kept and kept
            compared += 1
        assert compared >= 2
        # report only: every column the decision reads is what it was without regression rows
        drop = [n for n in res.column_names if n.startswith("adj_")]
        assert res.drop_columns(drop).equals(plain.drop_columns(drop))
        assert all(v is None for v in plain.column("adj_rel_effect").to_pylist())
    # an experiment without covariates: no rows, null columns (even given another's rows)
    other = experiment_results(
        reg.experiments[WITHOUT], reg.metrics, DAY, stats[WITHOUT], False, regression=stored
    )
    for name in ("adj_abs_effect", "adj_rel_p_value", "adj_variance_reduction", "adj_covariates"):
        assert set(other.column(name).to_pylist()) == {None}
    # a re-run replaces the day
    write_regression_stats(lake, DAY, [], states)
    assert lake.read_arrow(GOLD_REGRESSION_STATS, filter=pc.field("day") == DAY).num_rows == 0


def _moments(row) -> RegressionMoments:
    p = len(row["sums"])
    return RegressionMoments(
        n=row["n"],
        sums=np.array(row["sums"]),
        cross=np.array(row["cross"]).reshape(p, p),
        responses=row["responses"],
    )


# ---- the registry ---------------------------------------------------------------------------------


def test_an_unknown_covariate_metric_is_a_problem_naming_file_and_field(tmp_path):
    root = _copy_registry(
        tmp_path, {"checkout_cta": ["orders", "no_such_metric", "revenue_per_order"]}
    )
    problems = [
        p
        for p in validate_registry(root)
        if p.file == "experiments/checkout_cta.yaml" and p.field == "analysis.covariates"
    ]
    assert len(problems) == 2, problems
    assert "unknown metric 'no_such_metric'" in problems[0].reason
    assert "'revenue_per_order' is not one of this experiment's metrics" in problems[1].reason
    assert str(problems[0]).startswith(
        "experiments/checkout_cta.yaml: field 'analysis.covariates': "
    )


def test_covariates_read_metrics_and_attributes():
    reg = load_registry(REPO_ROOT)
    exp = reg.experiments["homepage_aa"]
    a = exp.analysis.model_validate(
        {"covariates": ["orders", {"attribute": "platform"}, "attribute:country"]}
    )
    assert a.covariate_metrics == ["orders"]
    assert a.covariate_attributes == ["platform", "country"]
    with pytest.raises(ValueError, match="attribute"):
        exp.analysis.model_validate({"covariates": [{"metric": "orders"}]})
    d = regression_design(exp.model_copy(update={"analysis": a}), reg.metrics)
    assert [m.id for m in d.metrics] == exp.metric_ids()  # no quantile metric here
    assert len(d.columns) == 1 + 2 * a.segment_top_n
    assert regression_design(reg.experiments[WITHOUT], reg.metrics) is None
