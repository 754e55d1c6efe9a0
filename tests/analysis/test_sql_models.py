"""The tiny dbt: lineage from refs, clear errors, rendering, and the real model folder."""

from __future__ import annotations

import pytest

from ab_pipelines.analysis.sql_models import (
    MODELS_DIR,
    ModelError,
    load_models,
    render,
    run_models,
    sql_literal,
    topological_order,
)
from ab_pipelines.analysis.sufficient_stats import metric_vars
from ab_pipelines.config.models import Metric


def _write(folder, **models):
    for name, sql in models.items():
        (folder / f"{name}.sql").write_text(sql)
    return folder


def test_refs_give_the_order(tmp_path):
    _write(
        tmp_path,
        c="SELECT * FROM {{ ref('b') }} JOIN {{ ref( \"a\" ) }}",
        b="SELECT * FROM {{ ref('a') }}",
        a="SELECT 1 AS x",
    )
    models = load_models(tmp_path)
    assert models["c"].refs == ("b", "a")
    assert topological_order(models) == ["a", "b", "c"]


def test_unknown_ref_names_the_file(tmp_path):
    _write(tmp_path, a="SELECT * FROM {{ ref('nope') }}")
    with pytest.raises(ModelError, match=r"a\.sql.*nope"):
        load_models(tmp_path)


def test_cycle_names_the_file(tmp_path):
    _write(tmp_path, a="SELECT * FROM {{ ref('b') }}", b="SELECT * FROM {{ ref('a') }}")
    with pytest.raises(ModelError, match=r"\.sql: ref cycle a -> b -> a"):
        load_models(tmp_path)


def test_missing_var_names_the_file(tmp_path):
    models = load_models(_write(tmp_path, a="SELECT {{ var('x') | sql }}"))
    assert render(models["a"], {"x": "it's"}) == "SELECT 'it\\'s'"
    with pytest.raises(ModelError, match=r"a\.sql: var\('x'\)"):
        render(models["a"], {})


def test_sql_literals():
    assert sql_literal(["a", 1, True, None]) == "'a', 1, TRUE, NULL"


def test_real_models_render():
    models = load_models(MODELS_DIR)
    assert "_macros" not in models
    order = topological_order(models)
    assert order.index("first_exposures") < order.index("analysed_units")
    assert order[-1] == "sufficient_stats"
    vars_ = {
        "start_ts": "2026-01-01 00:00:00.000000",
        "cutoff_ts": "2026-01-05 00:00:00.000000",
        "day_end_ts": "2026-01-05 00:00:00.000000",
        "lookback_days": 14,
        "overrides": [],
        **metric_vars(
            [
                Metric(id="rev", kind="mean", event="buy", agg="sum", where={"currency": "USD"}),
                Metric(
                    id="r",
                    kind="ratio",
                    numerator={"event": "pv", "agg": "sum"},
                    denominator={"event": "pv", "agg": "count"},
                    window_days=3,
                ),
            ]
        ),
    }
    sql = {name: render(models[name], vars_) for name in order}
    assert "get_json_object(e.properties, '$.currency') = 'USD'" in sql["metric_mean"]
    assert "INTERVAL 3 DAYS" in sql["metric_ratio"]
    assert "WHERE FALSE" in sql["metric_proportion"]  # no metric of that kind
    assert "NOT IN" not in sql["first_exposures"]


@pytest.mark.spark
def test_run_models_registers_views(spark, tmp_path):
    _write(
        tmp_path,
        doubled="SELECT x * {{ var('k') }} AS y FROM {{ ref('base') }}",
        base="SELECT x FROM numbers WHERE x > 1",
    )
    numbers = spark.createDataFrame([(1,), (2,), (3,)], "x INT")
    out = run_models(spark, load_models(tmp_path), {"k": 10}, {"numbers": numbers})
    assert sorted(r.y for r in out["doubled"].collect()) == [20, 30]
    assert spark.table("base").count() == 2
