"""Sail answers like JVM Spark: every SQL model and the whole day's analysis on the demo lake.

The demo lake (simulated traffic with history, late and duplicate records, landed) is analysed
through the embedded engine (Sail) and through a real JVM Spark Connect server (``local[2]``,
from the full ``pyspark`` of the same version, tests/engines/jvm.py). Every model's rows are
compared, and the gold tables a whole day's analysis writes: counts and text exactly, floats to
a relative 1e-9 (parallel sums may differ in their last bits; tests/compare.py).

This is what guards against the engine's silent failures (docs/engines.md): a model that Sail
ran differently, or rows it dropped, show here as a difference.

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
from ab_pipelines.analysis.sql_models import MODELS_DIR, load_models
from ab_pipelines.analysis.sufficient_stats import ANALYSED_STATUSES, experiment_models
from ab_pipelines.config import load_registry
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.engine import SESSION_CONF
from ab_pipelines.lake.tables import GOLD_SUFFICIENT_STATS
from ab_pipelines.settings import REPO_ROOT, paths
from ab_pipelines.simulate import simulate_days
from tests.compare import GOLD, differences, table_differences
from tests.engines.jvm import ConnectServer

pytestmark = [pytest.mark.spark, pytest.mark.jvm, pytest.mark.slow, pytest.mark.xdist_group("jvm")]

START = dt.date(2026, 11, 2)
SIM_DAYS, HISTORY = 3, 4
LAST = START + dt.timedelta(days=SIM_DAYS - 1)
# Every SQL model is compared on experiments that between them use every metric kind (mean,
# proportion, ratio; winsorized; a where and a window), segments and a kill cutoff; the whole
# day's gold tables on every experiment.
MODEL_EXPERIMENTS = ("homepage_aa", "search_speed")
KILLED = {"homepage_aa": dt.datetime(2026, 11, 4, 13, 30, tzinfo=dt.UTC)}
QUANTILE_MODELS = ("quantile_values", "quantile_stats")


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
    names = list(load_models(MODELS_DIR))
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
    counts, problems = differences(homes["sail"].home, homes["jvm"].home, GOLD)
    assert not problems, "\n".join(problems[:20])
    assert all(a > 0 for a, _ in counts.values()), counts
    quantiles = [
        r
        for r in Lake(homes["sail"]).read_arrow(GOLD_SUFFICIENT_STATS).to_pylist()
        if r["q_value"] is not None
    ]
    assert {r["metric"] for r in quantiles} == {"page_load_p90", "revenue_p90"}
