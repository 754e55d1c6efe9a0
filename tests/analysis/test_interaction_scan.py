"""The daily interaction scan in the pipeline: SQL cells, the stored scan, the planted interaction
and its alert, on a small simulated lake (the demo's registry and plants)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ab_pipelines.analysis.day import stats_day
from ab_pipelines.analysis.interactions import (
    INTERACTION_FDR,
    InteractionPass,
    day_interaction_cells,
    interaction_pass,
    scan_tests,
)
from ab_pipelines.analysis.state import states_of_day
from ab_pipelines.analysis.sufficient_stats import day_experiment_stats, experiment_models
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, GOLD_INTERACTIONS
from ab_pipelines.safety import conditions_for_day, read_alerts, reconcile_day
from ab_pipelines.settings import paths
from ab_pipelines.simulate import simulate_days
from ab_pipelines.stats.interactions import interaction_scan
from ab_pipelines.stats.moments import Moments, RatioMoments

pytestmark = [pytest.mark.spark, pytest.mark.slow]

START, DAYS = dt.date(2026, 11, 2), 5
DAY = START + dt.timedelta(days=DAYS - 1)  # search_speed (from 11-04) has 3 days
PLANTED = ("recs_ranking", "search_speed", "page_load_ms")
SUMS = ("n", "num_sum", "num_sum_sq", "den_sum", "den_sum_sq", "num_den_sum")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, spark, registry):
    home = paths(tmp_path_factory.mktemp("interactions"))
    simulate_days(home, START, DAYS, users=4000, seed=11, registry=registry, history_days=0)
    lake = Lake(home)
    for i in range(DAYS + 1):  # the day after holds the last day's late records
        land_day(spark, lake, home.raw, START + dt.timedelta(days=i), registry.known_variants())
    summary = stats_day(spark, lake, registry, DAY)
    return home, lake, summary


def _cells_by_key(table) -> dict:
    out: dict = {}
    for r in table.to_pylist():
        key = (r["experiment_a"], r["experiment_b"], r["metric"])
        out.setdefault(key, {})[(r["variant_a"], r["variant_b"])] = r
    return out


def test_the_sql_cells_are_the_per_unit_values_grouped_by_both_arms(spark, demo, registry):
    """Every cell summed beside the sufficient statistics equals the same grouping done in pandas
    on the per-unit values and arms of each experiment's own models (the den sums: ratio metrics
    only, NULL for the others)."""
    _, lake, _ = demo
    cells = _cells_by_key(day_interaction_cells(spark, lake, registry, DAY))
    values, arms = {}, {}
    for s in states_of_day(lake, registry, DAY).values():
        if not s.analysed:
            continue
        with experiment_models(spark, lake, registry, s.experiment_id, DAY, s.killed_at) as out:
            arms[s.experiment_id] = out["analysed_units"].select("unit", "variant").toPandas()
            mv = out["metric_values"].where("mature").toPandas()
            values[s.experiment_id] = mv
    tests = scan_tests(registry, arms)
    assert {t.key for t in tests} >= set(cells) and len(cells) >= 10
    for t in tests:
        other = t.experiment_b if t.values_from == t.experiment_a else t.experiment_a
        v = values[t.values_from]
        v = v[v.metric == t.metric].merge(arms[other], on="unit", suffixes=("_own", "_other"))
        own_is_a = t.values_from == t.experiment_a
        v["variant_a"] = v.variant_own if own_is_a else v.variant_other
        v["variant_b"] = v.variant_other if own_is_a else v.variant_own
        v["num_sq"], v["den_sq"], v["num_den"] = v.num**2, v.den**2, v.num * v.den
        g = v.groupby(["variant_a", "variant_b"]).agg(
            n=("unit", "size"),
            num_sum=("num", "sum"),
            num_sum_sq=("num_sq", "sum"),
            den_sum=("den", "sum"),
            den_sum_sq=("den_sq", "sum"),
            num_den_sum=("num_den", "sum"),
        )
        found = cells.get(t.key, {})
        assert set(found) == set(g.index), t
        ratio = registry.metrics[t.metric].kind == "ratio"
        for cell, row in g.iterrows():
            for f in SUMS:
                if f in SUMS[3:] and not ratio:
                    assert found[cell][f] is None, (t, cell, f)
                else:
                    assert found[cell][f] == pytest.approx(row[f], rel=1e-9), (t, cell, f)


def test_the_scan_changes_no_statistic_of_the_experiments(spark, demo, registry):
    """With the scan, the partners' first_exposures come from the scan's pass and every
    experiment's sufficient_stats also sums its cells: the statistics are the same rows, the
    units and crossovers too."""
    _, lake, _ = demo
    _, alone = day_experiment_stats(spark, lake, registry, DAY)
    with interaction_pass(registry) as scan:
        _, with_scan = day_experiment_stats(spark, lake, registry, DAY, scan=scan)
        assert len(scan.cells().to_pylist()) > 20
    assert [r.experiment_id for r in alone] == [r.experiment_id for r in with_scan]
    for a, b in zip(alone, with_scan, strict=True):
        assert a.stats.equals(b.stats), a.experiment_id
        assert (a.units, a.crossovers) == (b.units, b.crossovers), a.experiment_id
        assert a.cells is None
    assert sum(b.cells is not None for b in with_scan) >= 3


def test_the_planted_pairs_cells_match_a_recount_from_bronze(demo, registry):
    """page_load_ms of recs_ranking x search_speed recounted from the bronze rows in numpy: each
    experiment's first exposure in its window, crossovers out, the page views since search_speed's
    first exposure (search_speed owns the metric: it is its primary) up to D + 1 day."""
    _, lake, _ = demo
    day_end = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time())
    arrival = pc.field("arrival_date") <= DAY + dt.timedelta(days=1)

    def first_arms(exp_id: str):
        exp = registry.experiments[exp_id]
        x = lake.read_arrow(
            BRONZE_EXPOSURES,
            filter=arrival & (pc.field("experiment_id") == exp_id),
            columns=["user_id", "variant", "ts"],
        ).to_pandas()
        x["ts"] = x.ts.dt.tz_localize(None) if x.ts.dt.tz is not None else x.ts
        x = x[(x.ts >= dt.datetime.combine(exp.start_date, dt.time())) & (x.ts < day_end)]
        g = x.groupby("user_id").agg(first_ts=("ts", "min"), lo=("variant", "min"),
                                     hi=("variant", "max"))  # fmt: skip
        return g[g.lo == g.hi].rename(columns={"lo": "variant"})[["first_ts", "variant"]]

    recs, search = first_arms("recs_ranking"), first_arms("search_speed")
    views = lake.read_arrow(
        BRONZE_METRIC_EVENTS,
        filter=arrival & (pc.field("event") == "page_view"),
        columns=["user_id", "ts", "value"],
    ).to_pandas()
    views["ts"] = views.ts.dt.tz_localize(None) if views.ts.dt.tz is not None else views.ts
    v = views.merge(search, left_on="user_id", right_index=True)
    v = v[(v.ts >= v.first_ts) & (v.ts < day_end)]
    per_unit = v.groupby("user_id").agg(num=("value", "sum"), den=("value", "size"))
    units = search.join(per_unit, how="left").fillna({"num": 0.0, "den": 0.0})
    units = units.join(recs[["variant"]], rsuffix="_recs", how="inner")
    expected = units.groupby(["variant_recs", "variant"]).agg(
        n=("num", "size"), num_sum=("num", "sum"), den_sum=("den", "sum")
    )
    stored = lake.read_arrow(GOLD_INTERACTIONS).to_pylist()
    (row,) = [r for r in stored if (r["experiment_a"], r["experiment_b"], r["metric"]) == PLANTED]
    got = dict(zip(zip(row["cell_a"], row["cell_b"], strict=True), row["cell_n"], strict=True))
    assert got == {k: int(x) for k, x in expected["n"].items()}
    means = dict(zip(zip(row["cell_a"], row["cell_b"], strict=True), row["cell_mean"], strict=True))
    for k, r in expected.iterrows():
        assert means[k] == pytest.approx(r.num_sum / r.den_sum, rel=1e-9)


def test_the_stored_scan_is_interaction_scan_on_the_cells(spark, demo, registry):
    _, lake, _ = demo
    cells = _cells_by_key(day_interaction_cells(spark, lake, registry, DAY))
    stored = {
        (r["experiment_a"], r["experiment_b"], r["metric"]): r
        for r in lake.read_arrow(GOLD_INTERACTIONS).to_pylist()
    }
    assert set(stored) == set(cells)
    tests = {}
    for key, found in cells.items():
        row = stored[key]
        grid = [found.get((x, y)) for x in row["variants_a"] for y in row["variants_b"]]
        shape = (len(row["variants_a"]), len(row["variants_b"]))
        col = {f: np.array([c[f] if c else 0.0 for c in grid]).reshape(shape) for f in SUMS}
        ratio = registry.metrics[key[2]].kind == "ratio"
        tests[key] = (
            RatioMoments(**col)
            if ratio
            else Moments(n=col["n"], sum=col["num_sum"], sum_sq=col["num_sum_sq"])
        )
    scan = interaction_scan(tests, alpha=INTERACTION_FDR)
    for i, key in enumerate(scan.keys):
        row = stored[key]
        for name, want in (("p_value", scan.p_value[i]), ("p_adjusted", scan.p_adjusted[i])):
            if np.isnan(want):
                assert row[name] is None
            else:
                assert row[name] == pytest.approx(want, rel=1e-12), (key, name)
        assert row["statistic"] == pytest.approx(scan.results[i].statistic, rel=1e-12)
        assert row["flagged"] == (key in scan.flagged)
        assert row["cell_n"] == [int(c[0]) for c in np.ravel(tests[key].n)[:, None]]


def test_the_planted_interaction_is_flagged_and_nothing_else(demo, registry):
    home, lake, summary = demo
    rows = lake.read_arrow(GOLD_INTERACTIONS).to_pylist()
    flagged = [(r["experiment_a"], r["experiment_b"], r["metric"]) for r in rows if r["flagged"]]
    assert flagged == [PLANTED]
    assert summary.interactions_flagged == ("recs_ranking x search_speed/page_load_ms",)
    assert len(rows) >= 15  # every pair sharing units, every decision metric of either
    (row,) = [r for r in rows if r["flagged"]]
    assert (row["values_from"], row["driver_a"], row["driver_b"]) == (
        "search_speed",
        "treatment",
        "lite",
    )
    # The truth: lite's effect on page load is about -19% under the old ranking, -0.5% under the
    # new one, so recs_ranking's effect is positive under lite and negative under control.
    truth = orjson.loads(home.truth_file.read_bytes())
    (plant,) = truth["interactions"]
    assert plant["experiments"] == ["recs_ranking", "search_speed"]
    within = plant["effect_of_b_within_a"]
    assert within["control"] == pytest.approx(-0.1857, abs=1e-4)
    assert row["effect_in_baseline"] < 0 < row["effect_in_driver"]
    assert row["interaction"] > 0
    # the non-interacting pairs: none of the A/A's tests, none of the others
    assert all(r["p_adjusted"] is None or r["p_adjusted"] > INTERACTION_FDR for r in rows
               if r is not row)  # fmt: skip


def test_one_alert_names_the_pair_the_metric_and_the_cells(demo, registry):
    _, lake, _ = demo
    conds = [c for c in conditions_for_day(lake, registry, DAY) if c.kind == "interaction"]
    (c,) = conds
    assert (c.experiment_id, c.subject, c.severity) == ("recs_ranking", "search_speed/page_load_ms",
                                                         "warning")  # fmt: skip
    for text in ("recs_ranking", "search_speed", "page_load_ms", "control/lite n=",
                 "treatment/control n=", "BH-adjusted p"):  # fmt: skip
        assert text in c.message, c.message
    assert len(c.detail["cells"]) == 4
    now = dt.datetime(2026, 11, 7, tzinfo=dt.UTC)
    first = reconcile_day(lake, registry, DAY, now=now)
    again = reconcile_day(lake, registry, DAY, now=now)
    opened = [a for a in first.opened if a.kind == "interaction"]
    assert len(opened) == 1 and not again.changed
    alerts = [a for a in read_alerts(lake) if a.kind == "interaction"]
    assert [a.alert_id for a in alerts] == [
        f"interaction:recs_ranking:search_speed/page_load_ms:{DAY.isoformat()}"
    ]


def test_the_scan_pairs_only_the_registrys_experiments(registry):
    scan = InteractionPass(registry)
    scan.plan(["a_holdout", "search_speed", "recs_ranking"])  # a holdout is analysed, not scanned
    assert scan.experiments == ["recs_ranking", "search_speed"]
    assert {(t.experiment_a, t.experiment_b) for t in scan.tests} == {
        ("recs_ranking", "search_speed")
    }
    assert not scan.needs_arms("a_holdout")


def test_a_variant_without_units_has_no_cells_and_a_missing_row_fails_loudly(registry):
    """A variant with no unit yet (e.g. the first day) has its grid row with NULL cells: no cell.
    An experiment whose run returned no row for a tested metric and variant stops the scan."""
    scan = InteractionPass(registry)
    scan.plan(["search_speed", "recs_ranking"])
    keys: dict[str, list[tuple[str, str]]] = {}
    for t in scan.tests:
        for v in registry.experiments[t.values_from].variant_ids:
            keys.setdefault(t.values_from, []).append((t.metric, v))
    rows = {
        e: pa.table(
            {
                "metric": [m for m, _ in pairs],
                "variant": [v for _, v in pairs],
                "interaction_cells": pa.nulls(len(pairs), pa.list_(pa.float64())),
                "interaction_den_cells": pa.nulls(len(pairs), pa.list_(pa.float64())),
            }
        )
        for e, pairs in keys.items()
    }
    for e, table in rows.items():
        scan.take(e, table)
    assert scan.cells().num_rows == 0
    missing = InteractionPass(registry)
    missing.plan(["search_speed", "recs_ranking"])
    with pytest.raises(RuntimeError, match="did not return its row"):
        missing.cells()
    # A ratio metric's row with cells and no den cells (the model's part 1 lost) stops it too.
    assert any(registry.metrics[t.metric].kind == "ratio" for t in scan.tests)
    no_den = InteractionPass(registry)
    no_den.plan(["search_speed", "recs_ranking"])
    for e, table in rows.items():
        ones = pa.array([[1.0] * 6] * table.num_rows, pa.list_(pa.float64()))
        no_den.take(e, table.set_column(2, "interaction_cells", ones))
    with pytest.raises(RuntimeError, match="no den cells of the ratio metric"):
        no_den.cells()
    # Cells of another layout than planned (e.g. a model and the scan out of step) stop it.
    short = InteractionPass(registry)
    short.plan(["search_speed", "recs_ranking"])
    for e, table in rows.items():
        ones = pa.array([[1.0] * 5] * table.num_rows, pa.list_(pa.float64()))
        short.take(
            e,
            table.set_column(2, "interaction_cells", ones).set_column(
                3, "interaction_den_cells", ones
            ),
        )
    with pytest.raises(RuntimeError, match="not laid out as planned"):
        short.cells()
