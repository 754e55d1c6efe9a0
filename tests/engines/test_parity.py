"""Sail answers like JVM Spark: every SQL model and the whole day's analysis on the demo lake.

The demo lake (simulated traffic with history, late and duplicate records, landed) is analysed
through the embedded engine (Sail) and through a real JVM Spark Connect server (``local[2]``,
from the full ``pyspark`` of the same version, tests/engines/jvm.py). Every model's rows are
compared, and the gold tables a whole day's analysis writes: counts and text exactly, floats to
a relative 1e-9 (parallel sums may differ in their last bits; tests/compare.py).

This is what guards against the engine's silent failures (docs/engines.md): a model that Sail
ran differently, or rows it dropped, show here as a difference. The day-level model
(interaction_cells, which reads what every experiment's models leave behind) is compared on the
cells of the whole day, and its gold table, gold.interactions, with the other gold tables.

The analysis reads a registry copy in which two experiments also read quantile metrics (the repo's
files stay as approved): search_speed guards the demo metric page_load_p90 (event level, with
segments), homepage_aa (killed) a unit-level windowed p90 of revenue. So the quantile models
(the sorted value arrays of unit_sides, quantile_values, quantile_stats: exact ranks over
sorted distinct values, SIZE(FILTER(...)) per unit) are compared too.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pyarrow as pa
import pytest
import yaml

from ab_pipelines.analysis.day import results_day, stats_day
from ab_pipelines.analysis.interactions import day_interaction_cells
from ab_pipelines.analysis.regression_stats import (
    REGRESSION_MODEL,
    experiment_regression_sums,
    regression_design,
)
from ab_pipelines.analysis.sql_models import MODELS_DIR, load_models, models_reading
from ab_pipelines.analysis.sufficient_stats import (
    ANALYSED_STATUSES,
    EXPERIMENT_SOURCES,
    experiment_models,
)
from ab_pipelines.config import load_registry
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.engine import SESSION_CONF
from ab_pipelines.lake.tables import (
    GOLD_INTERACTIONS,
    GOLD_SUFFICIENT_STATS,
    OPS_BANDIT_ALLOCATIONS,
)
from ab_pipelines.settings import REPO_ROOT, paths
from ab_pipelines.simulate import simulate_days
from tests.compare import GOLD, close, differences, table_differences
from tests.engines.jvm import ConnectServer

pytestmark = [pytest.mark.spark, pytest.mark.jvm, pytest.mark.slow, pytest.mark.xdist_group("jvm")]

START = dt.date(2026, 11, 2)
SIM_DAYS, HISTORY = 3, 4
LAST = START + dt.timedelta(days=SIM_DAYS - 1)
# Every SQL model is compared on experiments that between them use every metric kind (mean,
# proportion, ratio; winsorized; a where and a window), segments and a kill cutoff; the whole
# day's gold tables on every experiment.
MODEL_EXPERIMENTS = ("homepage_aa", "search_speed", "promo_banner")
# The bandit's allocation periods (ops.bandit_allocations as the publisher records them): the
# models label each unit with the period of its first exposure (a CASE over the starts).
ALLOCATIONS = (
    (1, dt.datetime(2026, 11, 2, tzinfo=dt.UTC), [0.3334, 0.3333, 0.3333]),
    (3, dt.datetime(2026, 11, 3, tzinfo=dt.UTC), [0.2, 0.3, 0.5]),
    (5, dt.datetime(2026, 11, 4, 12, 30, tzinfo=dt.UTC), [0.1, 0.1, 0.8]),
)
KILLED = {"homepage_aa": dt.datetime(2026, 11, 4, 13, 30, tzinfo=dt.UTC)}
QUANTILE_MODELS = ("quantile_values", "quantile_stats")
# The regression model (run per experiment with analysis.covariates, on its kept models): a ratio
# metric as a covariate, attribute dummies from analysed_units (segments) and from the exposures.
COVARIATES = {
    "search_speed": ["conversion", "attribute:platform", "attribute:country"],
    "homepage_aa": ["orders", "revenue_per_order", "attribute:platform"],
}


@pytest.fixture(scope="module")
def analysed_registry(tmp_path_factory):
    """The repo's registry with quantile metrics added to two experiments (in a copy)."""
    root = tmp_path_factory.mktemp("registry")
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    revenue_p90 = {"id": "revenue_p90", "kind": "quantile", "event": "purchase",
                   "quantile": 0.9, "level": "unit", "window_days": 1}  # fmt: skip
    (root / "metrics" / "revenue_p90.yaml").write_text(yaml.safe_dump(revenue_p90))

    def add(exp_id: str, role: str, entry) -> None:
        path = root / "experiments" / f"{exp_id}.yaml"
        exp = yaml.safe_load(path.read_text())
        exp["metrics"].setdefault(role, []).append(entry)
        path.write_text(yaml.safe_dump(exp, sort_keys=False))

    add("search_speed", "guardrails", {"metric": "page_load_p90", "max_relative_change": 0.02})
    add("homepage_aa", "secondary", "revenue_p90")
    # regression_stats: attributes on analysed_units (segments) and read from the exposures
    for exp_id, covariates in COVARIATES.items():
        path = root / "experiments" / f"{exp_id}.yaml"
        exp = yaml.safe_load(path.read_text())
        exp["analysis"]["covariates"] = covariates
        path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return load_registry(root)


@pytest.fixture(scope="module")
def jvm_server(tmp_path_factory):
    server = ConnectServer(tmp_path_factory.mktemp("jvm-connect")).launch()
    yield server  # it starts while the demo lake is built
    server.stop()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory, spark, registry, jvm_server):
    home = paths(tmp_path_factory.mktemp("demo"))
    simulate_days(home, START, SIM_DAYS, users=3000, seed=11, registry=registry,
                  history_days=HISTORY)  # fmt: skip
    lake = Lake(home)
    rows = [
        {"experiment_id": "promo_banner", "config_version": v, "published_at": at,
         "variants": ["none", "discount", "free_shipping"], "weights": w, "source": "registry"}
        for v, at, w in ALLOCATIONS
    ]  # fmt: skip
    lake.write_arrow(
        OPS_BANDIT_ALLOCATIONS, pa.Table.from_pylist(rows, OPS_BANDIT_ALLOCATIONS.schema)
    )
    first = START - dt.timedelta(days=HISTORY)
    for i in range((LAST - first).days + 2):  # the day after holds the last day's late records
        land_day(spark, lake, home.raw, first + dt.timedelta(days=i), registry.known_variants())
    return home


@pytest.fixture(scope="module")
def jvm(jvm_server, demo_home):
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(jvm_server.wait().url).create()
    for key, value in SESSION_CONF.items():
        session.conf.set(key, value)
    yield session
    session.stop()


def _comparable(t: pa.Table) -> pa.Table:
    """List columns (the quantile models' value arrays, sorted by the SQL) as JSON text: rows are
    matched by sorting on every column, and Arrow does not sort lists. The values are the events'
    own, so their text must match exactly."""
    for i, f in enumerate(t.schema):
        if pa.types.is_list(f.type):
            text = pa.array([json.dumps(v) for v in t.column(i).to_pylist()], pa.string())
            t = t.set_column(i, pa.field(f.name, pa.string()), text)
    return t


def _experiments(registry, day):
    return sorted(
        e.id
        for e in registry.experiments.values()
        if e.status in ANALYSED_STATUSES and e.start_date <= day
    )


def test_every_sql_model_gives_the_same_rows(spark, jvm, demo_home, analysed_registry):
    lake, registry = Lake(demo_home), analysed_registry
    names = list(models_reading(load_models(MODELS_DIR), EXPERIMENT_SOURCES))
    # compared below
    assert set(load_models(MODELS_DIR)) - set(names) == {REGRESSION_MODEL}
    experiments = [e for e in _experiments(registry, LAST) if e in MODEL_EXPERIMENTS]
    assert len(experiments) == len(MODEL_EXPERIMENTS)
    compared, quantile_rows = 0, 0
    for exp in experiments:
        with (
            experiment_models(spark, lake, registry, exp, LAST, KILLED.get(exp)) as sail,
            experiment_models(jvm, lake, registry, exp, LAST, KILLED.get(exp)) as spark_jvm,
        ):
            assert set(sail) == set(spark_jvm) == set(names)
            for name in names:
                a, b = (_comparable(x[name].toArrow()) for x in (sail, spark_jvm))
                assert a.num_rows == b.num_rows, (exp, name, a.num_rows, b.num_rows)
                b = b.cast(a.schema) if b.schema != a.schema else b
                assert table_differences(a, b, name=f"{exp}/{name}") == []
                compared += a.num_rows
                quantile_rows += a.num_rows if name in QUANTILE_MODELS else 0
    assert compared > 10_000
    assert quantile_rows > 1_000  # the quantile models ran on real rows on both engines
    with experiment_models(spark, lake, registry, "promo_banner", LAST) as sail:
        periods = {r["segment"] for r in sail["unit_segments"].toArrow().to_pylist()}
    assert periods == {"all", "bandit_period=v1", "bandit_period=v3", "bandit_period=v5"}


def test_interaction_cells_are_the_same_on_both_engines(spark, jvm, demo_home, analysed_registry):
    """The cells sufficient_stats sums for the day's interaction scan (each experiment's values by
    its partners' arms, dbt_like_sql/sufficient_stats.sql with var interaction_partners)."""
    lake, registry = Lake(demo_home), analysed_registry
    a, b = (day_interaction_cells(s, lake, registry, LAST) for s in (spark, jvm))
    b = b.cast(a.schema) if b.schema != a.schema else b
    assert a.num_rows == b.num_rows > 20
    assert table_differences(a, b, name="interaction cells") == []
    assert len({(r["experiment_a"], r["experiment_b"]) for r in a.to_pylist()}) >= 5


def test_the_regression_stats_model_gives_the_same_rows(spark, jvm, demo_home, analysed_registry):
    lake, registry, compared = Lake(demo_home), analysed_registry, 0
    for exp_id in COVARIATES:
        exp = registry.experiments[exp_id]
        design = regression_design(exp, registry.metrics)
        with (
            experiment_models(spark, lake, registry, exp_id, LAST, KILLED.get(exp_id)) as sail,
            experiment_models(jvm, lake, registry, exp_id, LAST, KILLED.get(exp_id)) as spark_jvm,
        ):
            a, b = (experiment_regression_sums(s, exp, design, out)
                    for s, out in ((spark, sail), (jvm, spark_jvm)))  # fmt: skip
        b = b.cast(a.schema) if b.schema != a.schema else b
        assert a.num_rows == b.num_rows >= 4
        assert table_differences(a, b, name=f"{exp_id}/{REGRESSION_MODEL}") == []
        assert a.column("n").to_pylist() != [0] * a.num_rows
        compared += a.num_rows
    assert compared >= 10


def test_a_whole_day_of_analysis_writes_the_same_gold_tables(
    spark, jvm, demo_home, analysed_registry
):
    registry, homes = analysed_registry, {}
    for name in ("sail", "jvm"):
        root = demo_home.home.parent / f"{demo_home.home.name}-{name}"
        shutil.copytree(demo_home.lake, root / "lake")
        homes[name] = paths(root)
    assert len(_experiments(registry, LAST)) >= 5
    for name, session in (("sail", spark), ("jvm", jvm)):
        lake = Lake(homes[name])
        stats_day(session, lake, registry, LAST)
        results_day(lake, registry, LAST)
    # differences() compares lists exactly: every list-of-floats column of the gold tables (cell
    # means, level effects, regression sums: sums taken in another order) is compared apart, to
    # the same tolerance as the other floats.
    float_lists = {
        spec: [f.name for f in spec.schema if pa.types.is_list(f.type)
               and pa.types.is_floating(f.type.value_type)]
        for spec in GOLD
    }  # fmt: skip
    ignore = sorted({c for cols in float_lists.values() for c in cols})
    counts, problems = differences(homes["sail"].home, homes["jvm"].home, GOLD, ignore=ignore)
    assert not problems, "\n".join(problems[:20])
    for spec, columns in float_lists.items():
        rows = [
            Lake(homes[name]).read_arrow(spec).sort_by(
                [(k, "ascending") for k in [*spec.partition_by, *spec.keys]]).to_pylist()
            for name in ("sail", "jvm")
        ]  # fmt: skip
        for x, y in zip(*rows, strict=True):
            for c in columns:
                assert (x[c] is None) == (y[c] is None), (spec.qualified, c)
                assert x[c] is None or (
                    len(x[c]) == len(y[c])
                    and all(close(u, v) for u, v in zip(x[c], y[c], strict=True))
                ), (spec.qualified, c, x[c], y[c])
    assert Lake(homes["sail"]).read_arrow(GOLD_INTERACTIONS).num_rows > 0
    assert all(a > 0 for a, _ in counts.values()), counts
    quantiles = [
        r
        for r in Lake(homes["sail"]).read_arrow(GOLD_SUFFICIENT_STATS).to_pylist()
        if r["q_value"] is not None
    ]
    assert {r["metric"] for r in quantiles} == {"page_load_p90", "revenue_p90"}
