"""The tiny dbt: lineage from refs, clear errors, rendering, and the real model folder."""

from __future__ import annotations

import datetime as dt

import pytest

from ab_pipelines.analysis.regression_stats import SOURCE_MODELS
from ab_pipelines.analysis.sql_models import (
    MODELS_DIR,
    ModelError,
    load_models,
    models_reading,
    render,
    run_models,
    sql_literal,
    topological_order,
)
from ab_pipelines.analysis.sufficient_stats import (
    EXPERIMENT_SOURCES,
    arrival_partitions,
    metric_vars,
    model_vars,
)
from ab_pipelines.config.models import Experiment, Metric


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


@pytest.mark.spark
def test_sources_are_lineage_too(tmp_path, spark):
    models = load_models(
        _write(tmp_path, a="SELECT x FROM {{ source('raw') }}", b="SELECT * FROM {{ ref('a') }}")
    )
    assert models["a"].sources == ("raw",) and models["b"].sources == ()
    assert render(models["a"], {}) == "SELECT x FROM raw"
    with pytest.raises(ModelError, match=r"a\.sql: source\(s\) raw not given"):
        run_models(spark, models, {}, sources={})
    out = run_models(spark, models, {}, sources={"raw": spark.createDataFrame([(1,)], "x INT")})
    assert out["b"].collect()[0].x == 1
    # the real folder: which models read bronze
    real = load_models(MODELS_DIR)
    got = {n: tuple(sorted(m.sources)) for n, m in real.items() if m.sources}
    assert got == {
        "in_window_exposures": ("exposures",),
        "unit_sides": ("events",),
        # the partners' arms of the day's interaction scan (empty without one)
        "sufficient_stats": ("interaction_vectors",),
        # the day-level model reads what the experiments' runs kept, not bronze
        "regression_stats": tuple(sorted(SOURCE_MODELS)),
    }


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


_METRICS = [
    Metric(
        id="rev", kind="mean", event="buy", agg="sum", where={"currency": "USD"}, winsorize=0.99
    ),
    Metric(
        id="r",
        kind="ratio",
        numerator={"event": "pv", "agg": "sum"},
        denominator={"event": "pv", "agg": "count"},
        window_days=3,
        winsorize=0.9,
    ),
    Metric(id="conv", kind="proportion", event="buy", agg="any", winsorize=0.5),
]


def _real_vars(**over):
    return {
        "unit": "user_id",
        "start_ts": "2026-01-01 00:00:00.000000",
        "cutoff_ts": "2026-01-05 00:00:00.000000",
        "day_end_ts": "2026-01-05 00:00:00.000000",
        "lookback_days": 14,
        "overrides": [],
        "segments": [],
        "segment_top_n": 5,
        "variants": ["control", "treatment"],
        "metric_ids": [m.id for m in _METRICS[:2]],
        "bandit_periods": [],
        "interaction_partners": [],
        "interaction_sums": [],
        **metric_vars(_METRICS[:2]),
        **over,
    }


def test_sufficient_stats_sums_the_interaction_cells_only_when_asked():
    model = _experiment_models()["sufficient_stats"]
    plain = render(model, _real_vars())
    code = "\n".join(x for x in plain.splitlines() if not x.lstrip().startswith("--"))
    assert "interaction_vectors" not in code and "interaction_cells" not in code
    assert "cell_rows" not in code and "EXPLODE" not in code
    partners = [{"id": "other", "arms": 3, "column": "a4"}]
    means = [["n", "num_sum", "num_sum_sq"]]
    sql = render(
        model,
        _real_vars(interaction_partners=partners, interaction_sums=means, segments=["platform"]),
    )
    assert "LEFT JOIN interaction_vectors AS x" in sql
    assert "SUM(CASE WHEN x.a4 = 2 THEN v.t0 END)" in sql  # n: the mature units
    assert "CASE WHEN mature THEN 1D ELSE 0D END AS t0" in sql and "num * num AS t2" in sql
    assert "EXPLODE" not in sql  # no ratio metric asked: n, Σnum, Σnum² per cell
    assert sql.count("CASE WHEN x.a4 = ") == 3 * 3  # arms 0..2: n and two sums each
    assert "CAST(NULL AS ARRAY<DOUBLE>) AS interaction_cells" in sql  # the segment rows
    ratios = [*means, ["den_sum", "den_sum_sq", "num_den_sum"]]
    with_den = render(model, _real_vars(interaction_partners=partners, interaction_sums=ratios))
    ratio_ids = [m["id"] for m in metric_vars(_METRICS[:2])["ratio_metrics"]]
    assert ratio_ids  # the ratio metrics' rows are read twice, their den sums in part 1
    assert "CASE WHEN metric IN (" + ", ".join(f"'{m}'" for m in ratio_ids) in with_den
    assert "ELSE num * den END AS t2" in with_den
    assert with_den.count("CASE WHEN x.a4 = ") == 3 * 3  # the same sums: no more per row
    assert "LEAD(interaction_cells) OVER (PARTITION BY metric, variant ORDER BY part)" in with_den


def _experiment_models():
    """The per-experiment models (those that run on bronze alone), as each experiment runs them."""
    return models_reading(load_models(MODELS_DIR), EXPERIMENT_SOURCES)


def test_real_models_render():
    models = _experiment_models()
    assert "_macros" not in models
    order = topological_order(models)
    assert order.index("in_window_exposures") < order.index("first_exposures")
    assert order.index("first_exposures") < order.index("analysed_units")
    assert order.index("unit_segments") < order.index("sufficient_stats")
    assert order[-1] == "sufficient_stats"
    sql = {name: render(models[name], _real_vars()) for name in order}
    assert "get_json_object(e.properties, '$.currency') = 'USD'" in sql["unit_sides"]
    assert "INTERVAL 3 DAYS" in sql["unit_sides"]
    # One join for every metric: the templates only unpivot unit_sides.
    code = "\n".join(ln for ln in sql["unit_sides"].splitlines() if not ln.startswith("--"))
    assert code.count("LEFT JOIN") == 1
    assert "stack(1, 'rev', s0_post, 1D, s0_pre, 1D)" in sql["metric_mean"]
    assert "stack(1, 'r', s1_post, s2_post, s1_pre, s2_pre)" in sql["metric_ratio"]
    assert "WHERE FALSE" in sql["metric_proportion"]  # no metric of that kind
    assert "NOT IN" not in sql["in_window_exposures"]
    # unit = user_id: events join the unit directly, no members.
    assert (
        "e.user_id = u.unit" in sql["unit_sides"] and "JOIN unit_members" not in sql["unit_sides"]
    )
    assert "PERCENTILE(num, CAST(0.99 AS DOUBLE))" in sql["metric_values"]
    assert "PERCENTILE(pre_num, CAST(0.9 AS DOUBLE))" in sql["metric_values"]
    assert "WHERE FALSE" in sql["unit_segments"]  # no segment attributes


def test_real_models_render_unit_segments_and_overrides():
    models = _experiment_models()
    vars_ = _real_vars(unit="team_id", overrides=["T9"], segments=["platform"], segment_top_n=3)
    sql = {name: render(models[name], vars_) for name in topological_order(models)}
    assert "get_json_object(attributes, '$.team_id') AS unit" in sql["in_window_exposures"]
    assert "unit NOT IN ('T9')" in sql["in_window_exposures"]
    assert "JOIN unit_members AS mb ON mb.unit = u.unit" in sql["unit_sides"]
    assert "e.user_id = mb.user_id" in sql["unit_sides"]
    assert "get_json_object(attributes, '$.platform'), '(missing)'" in sql["unit_segments"]
    assert "value_rank <= 3" in sql["unit_segments"]


def test_a_bandit_s_periods_render_as_one_label_per_unit():
    models = _experiment_models()
    periods = [
        {"label": "bandit_period=v1", "start": None},
        {"label": "bandit_period=v4", "start": "2026-01-02 00:00:00.000000"},
        {"label": "bandit_period=v9", "start": "2026-01-03 12:00:00.000000"},
    ]
    sql = render(models["unit_segments"], _real_vars(bandit_periods=periods))
    case = sql[sql.index("CASE") : sql.index("END AS segment")]
    # the newest start first, the first period for everything before
    assert case.index("'bandit_period=v9'") < case.index("'bandit_period=v4'")
    assert "WHEN first_ts >= TIMESTAMP '2026-01-03 12:00:00.000000' THEN 'bandit_period=v9'" in case
    assert "WHEN TRUE THEN 'bandit_period=v1'" in case
    assert "'bandit_period=" not in render(models["unit_segments"], _real_vars())
    stats = render(models["sufficient_stats"], _real_vars(bandit_periods=periods))
    assert "JOIN unit_segments" in stats  # the period rows are summed like segment rows


def test_metric_vars_winsorize_skips_proportions():
    assert metric_vars(_METRICS)["winsorize"] == [{"id": "rev", "p": 0.99}, {"id": "r", "p": 0.9}]


def test_metric_vars_share_equal_sides():
    both = [
        *_METRICS,
        Metric(id="orders", kind="mean", event="buy", agg="count"),
        Metric(
            id="aov",
            kind="ratio",
            numerator={"event": "buy", "agg": "sum"},
            denominator={"event": "buy", "agg": "count"},
        ),
        Metric(id="rev2", kind="mean", event="buy", agg="sum", where={"currency": "USD"}),
    ]
    v = metric_vars(both)
    by_id = {m["id"]: m for k in ("mean", "proportion", "ratio") for m in v[f"{k}_metrics"]}
    # rev2 reads what rev reads; aov's den is what orders counts; r's window makes its own sides.
    assert by_id["rev2"]["side"] == by_id["rev"]["side"]
    assert by_id["aov"]["den_side"] == by_id["orders"]["side"]
    assert by_id["aov"]["num_side"] != by_id["rev"]["side"]  # no currency filter
    assert len(v["sides"]) == 8 - 2  # 8 sides read, 2 of them shared
    assert v["sides"][by_id["r"]["num_side"]]["window_days"] == 3


def test_arrival_partitions_cover_lookback_and_late_days():
    exp = Experiment(
        id="e",
        name="e",
        owner="o",
        start_date=dt.date(2026, 3, 20),
        variants=[{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}],
        analysis={"cuped_lookback_days": 14, "late_arrival_days": 2},
    )
    parts = arrival_partitions(exp, dt.date(2026, 3, 25))
    days = [p["arrival_date"] for p in parts]
    assert days[0] == "2026-02-26"  # 20 March - 14 - 8 days
    assert days[-1] == "2026-03-27"  # D + 2 late days
    assert len(days) == len(set(days)) == 30
    assert model_vars(exp, [], dt.date(2026, 3, 25))["metric_ids"] == []


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


_WINDOWED = [
    Metric(id="ret", kind="proportion", event="pv", agg="any", window_start_days=7, window_days=1),
    Metric(id="ord", kind="mean", event="buy", agg="count", window_days=7, winsorize=0.9),
    Metric(
        id="ord_all", kind="mean", event="buy", agg="count", window_days=7, include_maturing=True
    ),
    Metric(
        id="aov",
        kind="ratio",
        numerator={"event": "buy", "agg": "sum"},
        denominator={"event": "buy", "agg": "count"},
        window_days=7,
    ),
    Metric(id="conv", kind="proportion", event="buy", agg="any"),
]


def test_metric_vars_windows_and_maturity():
    v = metric_vars(_WINDOWED)
    by_id = {m["id"]: m for k in ("mean", "proportion", "ratio") for m in v[f"{k}_metrics"]}
    ret = v["sides"][by_id["ret"]["side"]]
    assert (ret["window_start_days"], ret["window_days"]) == (7, 1)
    # include_maturing reads the same side and does not wait for it; a ratio waits for both.
    assert by_id["ord_all"]["side"] == by_id["ord"]["side"] == by_id["aov"]["den_side"]
    assert by_id["ord"]["mature_sides"] == [by_id["ord"]["side"]]
    assert by_id["ord_all"]["mature_sides"] == by_id["conv"]["mature_sides"] == []
    assert by_id["aov"]["mature_sides"] == [by_id["aov"]["num_side"], by_id["aov"]["den_side"]]
    # A window that starts later is a side of its own.
    shifted = Metric(
        id="x", kind="mean", event="buy", agg="count", window_days=7, window_start_days=1
    )
    assert len(metric_vars([*_WINDOWED, shifted])["sides"]) == len(v["sides"]) + 1


def test_windows_render_into_the_one_join():
    models = _experiment_models()
    vars_ = _real_vars(metric_ids=[m.id for m in _WINDOWED], **metric_vars(_WINDOWED))
    sql = {name: render(models[name], vars_) for name in topological_order(models)}
    sides = sql["unit_sides"]
    code = "\n".join(ln for ln in sides.splitlines() if not ln.startswith("--"))
    assert code.count("JOIN") == 1  # the start offset and maturity come from the same rows
    assert (
        "e.ts >= u.first_ts + INTERVAL 7 DAYS AND e.ts < LEAST(u.day_end_ts, u.first_ts + "
        "INTERVAL 8 DAYS)" in sides
    )
    assert "MIN(u.first_ts) + INTERVAL 8 DAYS <= MIN(u.day_end_ts) AS s0_mature" in sides
    assert "MIN(u.first_ts) + INTERVAL 7 DAYS <= MIN(u.day_end_ts) AS s1_mature" in sides
    assert "TRUE AS s3_mature" in sides  # conv: no window
    assert "WHEN 'ret' THEN s0_mature" in sql["metric_proportion"]
    assert "WHEN 'conv'" not in sql["metric_proportion"]
    assert "WHEN 'ord' THEN s1_mature" in sql["metric_mean"]
    assert "WHEN 'ord_all'" not in sql["metric_mean"]
    assert "WHEN 'aov' THEN s2_mature AND s1_mature" in sql["metric_ratio"]
    assert "WHERE metric = 'ord' AND mature" in sql["metric_values"]  # caps: counted units only
    assert "AS maturing" in sql["sufficient_stats"]
    # Without a windowed metric there is nothing to wait for.
    plain = _real_vars(**metric_vars(_METRICS[:1]), metric_ids=["rev"])
    assert "TRUE AS mature" in render(models["metric_mean"], plain)
    assert "_mature," not in render(models["metric_mean"], plain)
