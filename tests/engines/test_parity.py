"""Sail answers like JVM Spark: every SQL model and the whole day's analysis on the demo lake.

The demo lake (simulated traffic with history, late and duplicate records, landed) is analysed
through the embedded engine (Sail) and through a real JVM Spark Connect server (``local[2]``,
from the full ``pyspark`` of the same version, tests/engines/jvm.py). Every model's rows are
compared, and the gold tables a whole day's analysis writes: counts and text exactly, floats to
a relative 1e-9 (parallel sums may differ in their last bits; tests/compare.py).

This is what guards against the engine's silent failures (docs/engines.md): a model that Sail
ran differently, or rows it dropped, show here as a difference.
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from ab_pipelines.analysis.day import results_day, stats_day
from ab_pipelines.analysis.sql_models import MODELS_DIR, load_models
from ab_pipelines.analysis.sufficient_stats import ANALYSED_STATUSES, experiment_models
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.engine import SESSION_CONF
from ab_pipelines.settings import paths
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


def _experiments(registry, day):
    return sorted(
        e.id
        for e in registry.experiments.values()
        if e.status in ANALYSED_STATUSES and e.start_date <= day
    )


def test_every_sql_model_gives_the_same_rows(spark, jvm, demo_home, registry):
    lake = Lake(demo_home)
    names = list(load_models(MODELS_DIR))
    experiments = [e for e in _experiments(registry, LAST) if e in MODEL_EXPERIMENTS]
    assert len(experiments) == len(MODEL_EXPERIMENTS)
    compared = 0
    for exp in experiments:
        with (
            experiment_models(spark, lake, registry, exp, LAST, KILLED.get(exp)) as sail,
            experiment_models(jvm, lake, registry, exp, LAST, KILLED.get(exp)) as spark_jvm,
        ):
            assert set(sail) == set(spark_jvm) == set(names)
            for name in names:
                a, b = sail[name].toArrow(), spark_jvm[name].toArrow()
                assert a.num_rows == b.num_rows, (exp, name, a.num_rows, b.num_rows)
                b = b.cast(a.schema) if b.schema != a.schema else b
                assert table_differences(a, b, name=f"{exp}/{name}") == []
                compared += a.num_rows
    assert compared > 10_000


def test_a_whole_day_of_analysis_writes_the_same_gold_tables(spark, jvm, demo_home, registry):
    homes = {}
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
