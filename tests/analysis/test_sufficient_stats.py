"""Spark SQL sufficient statistics against an independent pure-Python reading of the contract.

Two experiments share one hand-built bronze:

- ``exp`` (unit user_id): every edge case of the windows, a third variant nobody is exposed to
  (n = 0 rows), winsorized mean and ratio metrics (and a winsorized proportion: a no-op), and
  segments on two attributes with more values than ``segment_top_n`` (``other`` pooling,
  ``(missing)`` for absent and JSON-null attributes, the first exposure's attributes win);
- ``exp_team`` (unit team_id, an exposure attribute): users sharing a team, a user in two teams,
  a crossover team, an overridden team, exposures without a team.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import fields

import numpy as np
import pyarrow as pa
import pytest

from ab_pipelines.analysis.sufficient_stats import experiment_stats, write_day
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, GOLD_SUFFICIENT_STATS
from ab_pipelines.stats.moments import RatioMoments
from tests.compare import table_differences

UTC = dt.UTC
START = dt.date(2026, 3, 1)
DAY = dt.date(2026, 3, 5)
LATE = 1
LOOKBACK = 3
STAT_FIELDS = [f.name for f in fields(RatioMoments)]

METRICS = {
    "revenue": Metric(
        id="revenue",
        kind="mean",
        event="purchase",
        agg="sum",
        where={"currency": "USD"},
        window_days=2,
    ),
    "orders": Metric(id="orders", kind="mean", event="purchase", agg="count"),
    "conversion": Metric(id="conversion", kind="proportion", event="purchase", agg="any"),
    "page_load_ms": Metric(
        id="page_load_ms",
        kind="ratio",
        numerator={"event": "page_view", "agg": "sum"},
        denominator={"event": "page_view", "agg": "count"},
    ),
    # Low percentiles, so that the caps bind on a few dozen units.
    "revenue_w": Metric(id="revenue_w", kind="mean", event="purchase", agg="sum", winsorize=0.8),
    "page_load_w": Metric(
        id="page_load_w",
        kind="ratio",
        numerator={"event": "page_view", "agg": "sum"},
        denominator={"event": "page_view", "agg": "count"},
        winsorize=0.7,
    ),
    "conversion_w": Metric(
        id="conversion_w", kind="proportion", event="purchase", agg="any", winsorize=0.3
    ),
}
EXPERIMENT = Experiment(
    id="exp",
    name="Parity",
    owner="a@example.com",
    status="running",
    start_date=START,
    end_date=dt.date(2026, 3, 20),
    variants=[
        {"id": "control", "weight": 0.45},
        {"id": "treatment", "weight": 0.45},
        {"id": "holdout", "weight": 0.1},  # nobody is exposed to it: n = 0 rows
    ],
    metrics={
        "primary": ["conversion"],
        "secondary": ["revenue", "orders", "revenue_w", "conversion_w"],
        "guardrails": [
            {"metric": "page_load_ms", "max_relative_change": 0.05},
            {"metric": "page_load_w", "max_relative_change": 0.05},
        ],
    },
    overrides={"u-over": "treatment"},
    analysis={
        "cuped_lookback_days": LOOKBACK,
        "late_arrival_days": LATE,
        "segments": ["platform", "country"],
        "segment_top_n": 2,
    },
)
TEAM_EXPERIMENT = Experiment(
    id="exp_team",
    name="Team parity",
    owner="a@example.com",
    status="running",
    start_date=START,
    unit="team_id",
    variants=[{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
    metrics={"primary": ["conversion"], "secondary": ["revenue", "page_load_w"]},
    overrides={"T-over": "treatment"},
    analysis={
        "cuped_lookback_days": LOOKBACK,
        "late_arrival_days": LATE,
        "segments": ["platform"],
        "segment_top_n": 1,
    },
)
REGISTRY = Registry(experiments={"exp": EXPERIMENT, "exp_team": TEAM_EXPERIMENT}, metrics=METRICS)
EXPERIMENTS = {"exp": EXPERIMENT, "exp_team": TEAM_EXPERIMENT}


def _t(day: dt.date, hours: float) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(hours=hours)


def _bronze(seed: int = 7) -> tuple[list[dict], list[dict]]:
    """A few dozen users and teams with every edge case of the contract's rules."""
    rng = random.Random(seed)
    exposures, events = [], []

    def expose(user, variant, ts, arrival=None, exp="exp", event_id=None, **attributes):
        exposures.append(
            {
                "event_id": event_id or f"x{len(exposures):03d}",
                "user_id": user,
                "experiment_id": exp,
                "variant": variant,
                "ts": ts,
                "attributes": json.dumps(attributes, sort_keys=True),
                "arrival_date": arrival or ts.date(),
            }
        )

    def event(user, name, value, ts, props=None, arrival=None):
        events.append(
            {
                "event_id": f"e{len(events)}",
                "user_id": user,
                "event": name,
                "value": value,
                "ts": ts,
                "properties": json.dumps(props or {}, sort_keys=True),
                "arrival_date": arrival or ts.date(),
            }
        )

    def activity(user, first):
        """Random purchases and page views around a first exposure (in and before the windows)."""
        for _ in range(rng.randint(0, 6)):
            ts = first + dt.timedelta(hours=rng.uniform(-24 * 5, 24 * 5))
            currency = rng.choice(["USD", "USD", "EUR"])
            arrival = ts.date() + dt.timedelta(days=rng.choice([0, 0, 0, 1, 2]))
            event(user, "purchase", rng.randint(1, 400) / 4, ts, {"currency": currency}, arrival)
        for _ in range(rng.randint(0, 4)):
            ts = first + dt.timedelta(hours=rng.uniform(-24 * 4, 24 * 4))
            event(user, "page_view", rng.randint(100, 4000) / 4, ts, {"page": "home"})

    # Segment attributes: "platform" has 4 values and is often absent or JSON null (-> "(missing)");
    # "country" has 6 values. Both have more values than segment_top_n = 2, so some are pooled.
    platforms = ["ios", "ios", "android", "web", "tv", None, None, "null"]
    countries = ["US", "US", "US", "CA", "DE", "FR", "BR", "JP"]

    def attrs(**extra):
        out = {}
        p, c = rng.choice(platforms), rng.choice(countries)
        if p == "null":
            out["platform"] = None  # JSON null: "(missing)" too
        elif p is not None:
            out["platform"] = p
        out["country"] = c
        return {**out, **extra}

    users = [f"u{i:02d}" for i in range(36)]
    for i, user in enumerate(users):
        variant = "control" if i % 2 else "treatment"
        first = _t(START, rng.uniform(-30, 24 * 5.5))  # some before the start, some after D + 1
        for k in range(rng.randint(1, 3)):  # later exposures may carry other attributes
            expose(user, variant, first + dt.timedelta(hours=6 * k), **attrs())
        activity(user, first)
    # Named edge cases.
    expose("u-cross", "control", _t(START, 10))
    expose("u-cross", "treatment", _t(START, 30))  # a crossover
    expose("u-over", "treatment", _t(START, 5))  # overridden: never analysed
    event("u-over", "purchase", 50.0, _t(START, 6), {"currency": "USD"})
    expose("u-late", "control", _t(DAY, 3), arrival=DAY + dt.timedelta(days=LATE + 1))  # too late
    expose("u-edge", "control", _t(START, 1), platform="ios", country="US")
    event("u-edge", "purchase", 10.0, _t(START, 2), {"currency": "USD"})
    event(
        "u-edge", "purchase", 20.0, _t(START, 24 * 2 + 2), {"currency": "USD"}
    )  # past window_days
    event("u-edge", "purchase", 30.0, _t(DAY, 25), {"currency": "USD"})  # ts >= D + 1
    event(
        "u-edge", "purchase", 40.0, _t(DAY, 2), {"currency": "USD"}, arrival=DAY + dt.timedelta(2)
    )
    event("u-edge", "purchase", 5.0, _t(START, -30), {"currency": "USD"})  # pre-period
    event("u-edge", "page_view", 700.0, _t(START, -100))  # before the lookback
    event("u-edge", "purchase", 9000.0, _t(START, -40), {"currency": "USD"})  # a pre outlier
    event("u-none", "purchase", 1.0, _t(START, 3), {"currency": "USD"})  # never exposed
    # Two first exposures at the same instant: the smaller event_id gives the attributes (a top
    # value; the other one would be pooled into "other").
    expose("u-tie", "treatment", _t(START, 7), event_id="x-tie-b", platform="web", country="JP")
    expose("u-tie", "treatment", _t(START, 7), event_id="x-tie-a", platform="ios", country="US")
    event("u-tie", "purchase", 5000.0, _t(START, 8), {"currency": "USD"})  # an outlier
    event("u-tie", "page_view", 90000.0, _t(START, 9))  # an outlier
    # A row the ingest would have refused (ts 20 days after its arrival day) in an arrival
    # partition before the read range: pruned, never read.
    event("u-edge", "purchase", 777.0, _t(START, 3), {"currency": "USD"}, START - dt.timedelta(20))

    # exp_team: the unit is the exposure attribute team_id; events carry user_id only.
    team_of = {f"t{i:02d}": f"T{i % 9:02d}" for i in range(24)}  # 2-3 users per team
    for user, team in team_of.items():
        variant = "control" if int(team[1:]) % 2 else "treatment"
        first = _t(START, rng.uniform(-10, 24 * 4.5))
        for k in range(rng.randint(1, 2)):
            ts = first + dt.timedelta(hours=5 * k)
            expose(user, variant, ts, exp="exp_team", team_id=team, **attrs())
        activity(user, first)
    # Two users share T-pair; t-both is seen under T-pair and T-solo and counts for both.
    expose("t-a", "control", _t(START, 4), exp="exp_team", team_id="T-pair", platform="ios")
    expose("t-b", "control", _t(START, 2), exp="exp_team", team_id="T-pair", platform="web")
    expose("t-both", "control", _t(START, 20), exp="exp_team", team_id="T-pair")
    expose("t-both", "treatment", _t(START, 21), exp="exp_team", team_id="T-solo")
    for user in ("t-a", "t-b", "t-both"):
        event(user, "purchase", 12.5, _t(START, 30), {"currency": "USD"})
        event(user, "page_view", 400.0, _t(START, 31))
    event("t-b", "purchase", 7.0, _t(START, -20), {"currency": "USD"})  # pre-period of T-pair
    # A crossover team (two users, two variants), an overridden team, a team-less exposure, and
    # a numeric team id (JSON text "17").
    expose("t-c1", "control", _t(START, 6), exp="exp_team", team_id="T-cross")
    expose("t-c2", "treatment", _t(START, 8), exp="exp_team", team_id="T-cross")
    expose("t-o", "treatment", _t(START, 6), exp="exp_team", team_id="T-over")
    expose("t-none", "control", _t(START, 6), exp="exp_team", platform="ios")
    event("t-none", "purchase", 99.0, _t(START, 7), {"currency": "USD"})
    expose("t-num", "treatment", _t(START, 9), exp="exp_team", team_id=17)
    event("t-num", "purchase", 3.0, _t(START, 10), {"currency": "USD"})
    return exposures, events


def _json_text(value) -> str:
    """A JSON value as get_json_object returns it: strings as-is, others as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def _expected(exp: Experiment, exposures, events, killed_at=None) -> dict:
    """The contract's rules applied row by row, then RatioMoments.from_values per group.

    Returns ``stats`` ({(segment, metric, variant): fields} in the expected row order), ``units``,
    ``crossovers``, plus ``members`` and ``capped`` (how many values each cap changed) so that the
    test can check the data really exercises the rules.
    """
    day_end = _t(DAY, 24)
    lookback = dt.timedelta(days=exp.analysis.cuped_lookback_days)
    last_arrival = DAY + dt.timedelta(days=exp.analysis.late_arrival_days)
    cutoff = min(day_end, killed_at or day_end)
    if exp.end_date:
        cutoff = min(cutoff, _t(exp.end_date, 24))

    def ingest_valid(row):  # what the ingest keeps: ts in [arrival - 7 days, arrival + 2 days)
        arrival = _t(row["arrival_date"], 0)
        return arrival - dt.timedelta(days=7) <= row["ts"] < arrival + dt.timedelta(days=2)

    seen: dict[str, list[dict]] = {}
    for x in exposures:
        ok = x["experiment_id"] == exp.id and ingest_valid(x)
        ok = ok and x["arrival_date"] <= last_arrival and x["ts"] < day_end
        ok = ok and _t(exp.start_date, 0) <= x["ts"] < cutoff
        if not ok:
            continue
        attributes = json.loads(x["attributes"])
        unit = x["user_id"] if exp.unit == "user_id" else attributes.get(exp.unit)
        if unit is None or _json_text(unit) in exp.overrides:
            continue
        seen.setdefault(_json_text(unit), []).append(x)
    members = {u: {x["user_id"] for x in xs} for u, xs in seen.items()}
    crossovers = sum(1 for xs in seen.values() if len({x["variant"] for x in xs}) > 1)
    units = {}  # unit -> (first ts, variant, attributes of the first exposure)
    for u, xs in seen.items():
        if len({x["variant"] for x in xs}) == 1:
            first = min(xs, key=lambda x: (x["ts"], x["event_id"]))
            units[u] = (first["ts"], first["variant"], json.loads(first["attributes"]))
    counted = [
        e
        for e in events
        if ingest_valid(e) and e["arrival_date"] <= last_arrival and e["ts"] < day_end
    ]

    # Segments: the first exposure's value, top N by units (ties by value), the rest "other".
    labels: dict[str, list[str]] = {u: ["all"] for u in units}
    for a in dict.fromkeys(exp.analysis.segments):
        value = {}
        for u, (_, _, attributes) in units.items():
            v = attributes.get(a)
            value[u] = "(missing)" if v is None else _json_text(v)
        counts: dict[str, int] = {}
        for v in value.values():
            counts[v] = counts.get(v, 0) + 1
        ranked = sorted(counts, key=lambda v: (-counts[v], v))
        top = set(ranked[: exp.analysis.segment_top_n])
        for u, v in value.items():
            labels[u].append(f"{a}={v if v in top else 'other'}")

    def agg(users, event, agg_, where, lo, hi):
        rows = [
            e
            for e in counted
            if e["user_id"] in users
            and e["event"] == event
            and lo <= e["ts"] < hi
            and all(json.loads(e["properties"]).get(k) == v for k, v in where.items())
        ]
        if agg_ == "sum":
            return float(sum(e["value"] for e in rows))
        if agg_ == "count":
            return float(len(rows))
        return float(bool(rows))

    metrics = [REGISTRY.metrics[m] for m in dict.fromkeys(exp.metric_ids())]
    values: dict[str, dict[str, list[float]]] = {}  # metric -> unit -> [num, den, pre_num, pre_den]
    capped: dict[tuple[str, str], int] = {}
    for m in metrics:
        values[m.id] = {}
        for u, (first, _, _) in units.items():
            hi = day_end
            if m.window_days:
                hi = min(hi, first + dt.timedelta(days=m.window_days))
            pre = (first - lookback, first)
            users = members[u]
            if m.kind == "ratio":
                n, d = m.numerator, m.denominator
                row = [
                    agg(users, n.event, n.agg, n.where, first, hi),
                    agg(users, d.event, d.agg, d.where, first, hi),
                    agg(users, n.event, n.agg, n.where, *pre),
                    agg(users, d.event, d.agg, d.where, *pre),
                ]
            else:
                a = m.agg
                row = [
                    agg(users, m.event, a, m.where, first, hi),
                    1.0,
                    agg(users, m.event, a, m.where, *pre),
                    1.0,
                ]
            values[m.id][u] = row
        # Winsorizing: upper caps on num and pre_num (each its own percentile over all units,
        # variants pooled); never the denominators; a proportion is never capped.
        if m.winsorize is not None and m.kind != "proportion" and units:
            for i, name in ((0, "num"), (2, "pre_num")):
                cap = float(np.percentile([r[i] for r in values[m.id].values()], 100 * m.winsorize))
                capped[(m.id, name)] = sum(r[i] > cap for r in values[m.id].values())
                for r in values[m.id].values():
                    r[i] = min(r[i], cap)

    variants = list(dict.fromkeys([*exp.variant_ids, *sorted({v for _, v, _ in units.values()})]))
    present = sorted({s for ls in labels.values() for s in ls} - {"all"})
    stats, unit_counts = {}, {}
    for segment in ["all", *present]:
        unit_counts[segment] = {
            v: sum(1 for u, (_, uv, _) in units.items() if uv == v and segment in labels[u])
            for v in variants
        }
        for m in sorted(metrics, key=lambda m: m.id):
            for variant in sorted(variants):
                rows = [
                    r
                    for u, r in values[m.id].items()
                    if units[u][1] == variant and segment in labels[u]
                ]
                cols = [[r[i] for r in rows] for i in range(4)]
                moments = RatioMoments.from_values(*cols)
                stats[(segment, m.id, variant)] = {f: getattr(moments, f) for f in STAT_FIELDS}
    return {
        "stats": stats,
        "units": unit_counts,
        "crossovers": crossovers,
        "members": members,
        "capped": capped,
    }


def write_bronze(lake: Lake) -> Lake:
    """The test bronze of ``_bronze()`` written into ``lake``."""
    exposures, events = _bronze()
    lake.write_arrow(
        BRONZE_EXPOSURES, pa.Table.from_pylist(exposures, schema=BRONZE_EXPOSURES.schema)
    )
    lake.write_arrow(
        BRONZE_METRIC_EVENTS, pa.Table.from_pylist(events, schema=BRONZE_METRIC_EVENTS.schema)
    )
    return lake


@pytest.fixture
def lake(home):
    return write_bronze(Lake(home))


def _assert_parity(result, want):
    rows = result.stats.to_pylist()
    assert [(r["segment"], r["metric"], r["variant"]) for r in rows] == list(want["stats"])
    for row in rows:
        key = (row["segment"], row["metric"], row["variant"])
        assert row["experiment_id"] == result.experiment_id and row["day"] == DAY
        expected = want["stats"][key]
        assert row["n"] == expected["n"], key
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, name)
    assert result.units == want["units"]
    assert list(result.units) == list(want["units"])  # "all" first, then labels ascending
    assert result.crossovers == want["crossovers"]


def test_the_reference_sees_every_edge_case():
    """The hand-built bronze exercises each rule (checked on the reference, no Spark needed)."""
    exposures, events = _bronze()
    want = _expected(EXPERIMENT, exposures, events)
    assert want["crossovers"] == 1
    # A variant with no units: n = 0 rows in "all" and in every segment present.
    assert want["units"]["all"]["holdout"] == 0
    assert want["stats"][("all", "revenue", "holdout")]["n"] == 0
    assert all(counts["holdout"] == 0 for counts in want["units"].values())
    # Segments: more values than top_n, so pooling; absent and JSON-null attributes.
    segments = set(want["units"])
    assert {"platform=other", "country=other", "platform=(missing)"} <= segments
    assert len([s for s in segments if s.startswith("platform=")]) == 3
    assert len([s for s in segments if s.startswith("country=")]) == 3
    for attribute in ("platform", "country"):
        per_label = [c for s, c in want["units"].items() if s.startswith(attribute + "=")]
        assert sum(sum(c.values()) for c in per_label) == sum(want["units"]["all"].values())
    # Winsorizing binds on num and pre_num of the mean and the ratio metric.
    assert all(
        want["capped"][(m, c)] > 0 for m in ("revenue_w", "page_load_w") for c in ("num", "pre_num")
    )
    assert not any(m == "conversion_w" for m, _ in want["capped"])
    # The team experiment: two users share T-pair; t-both is in T-pair and T-solo.
    team = _expected(TEAM_EXPERIMENT, exposures, events)
    assert want["units"]["platform=ios"]["treatment"] > 0  # u-tie, by its x-tie-a exposure
    assert team["members"]["T-pair"] == {"t-a", "t-b", "t-both"}
    assert team["members"]["T-solo"] == {"t-both"}
    assert "17" in team["members"] and "T-over" not in team["members"]
    assert team["crossovers"] == 1  # T-cross
    assert team["units"]["all"]["control"] > 0 and team["units"]["all"]["treatment"] > 0


@pytest.mark.spark
@pytest.mark.parametrize(
    ("experiment_id", "killed_at"),
    [("exp", None), ("exp", _t(DAY, -30)), ("exp_team", None)],
)
def test_spark_matches_pure_python(spark, lake, experiment_id, killed_at):
    exposures, events = _bronze()
    want = _expected(EXPERIMENTS[experiment_id], exposures, events, killed_at)
    result = experiment_stats(spark, lake, REGISTRY, experiment_id, DAY, killed_at=killed_at)
    _assert_parity(result, want)


@pytest.mark.spark
def test_rerun_of_a_day_gives_the_same_rows(spark, lake):
    exposures, events = _bronze()
    want = {e: _expected(EXPERIMENTS[e], exposures, events) for e in ("exp", "exp_team")}
    order = [(c, "ascending") for c in ("experiment_id", "segment", "metric", "variant")]
    first = write_day(spark, lake, REGISTRY, DAY)
    rows1 = lake.read_arrow(GOLD_SUFFICIENT_STATS).sort_by(order)
    second = write_day(spark, lake, REGISTRY, DAY)
    rows2 = lake.read_arrow(GOLD_SUFFICIENT_STATS).sort_by(order)
    assert second.version > first.version
    assert rows1.num_rows == sum(len(w["stats"]) for w in want.values())
    # Counts and text exact; sums to the last bits a parallel engine's summing order leaves.
    assert table_differences(rows1, rows2, ["experiment_id", "segment", "metric", "variant"]) == []
    assert rows1.column("n").equals(rows2.column("n"))
    assert [e.experiment_id for e in second.experiments] == ["exp", "exp_team"]
    assert [e.crossovers for e in second.experiments] == [1, 1]
    assert [e.units for e in second.experiments] == [
        want["exp"]["units"],
        want["exp_team"]["units"],
    ]


@pytest.mark.spark
@pytest.mark.parametrize("experiment", [EXPERIMENT, TEAM_EXPERIMENT], ids=["exp", "exp_team"])
def test_spark_matches_pure_python_without_segments(spark, lake, experiment):
    """Without segments the models skip the first exposure's attributes and the segment join."""
    plain = experiment.model_copy(
        update={"analysis": experiment.analysis.model_copy(update={"segments": []})}
    )
    registry = Registry(experiments={plain.id: plain}, metrics=METRICS)
    exposures, events = _bronze()
    want = _expected(plain, exposures, events)
    assert list(want["units"]) == ["all"]
    _assert_parity(experiment_stats(spark, lake, registry, plain.id, DAY), want)


@pytest.mark.spark
def test_a_day_whose_inputs_the_engine_reads_as_empty_is_never_written(spark, lake, monkeypatch):
    """Sail reads a ``file:/abs`` path as no rows, without an error (ENVIRONMENT.md). Were the
    lake's URLs ever built that way, the day must fail loudly rather than write zero users."""
    from ab_pipelines.analysis.day import stats_day
    from ab_pipelines.lake import EngineReadError
    from ab_pipelines.lake import delta as delta_module
    from ab_pipelines.lake.tables import GOLD_SRM

    monkeypatch.setattr(delta_module, "file_url", lambda p: "file:" + str(p))
    with pytest.raises(EngineReadError, match=r"read 0 rows of bronze\.\w+ where the Delta log"):
        stats_day(spark, lake, REGISTRY, DAY)
    assert lake.version(GOLD_SUFFICIENT_STATS) is None and lake.version(GOLD_SRM) is None
    monkeypatch.undo()
    stats_day(spark, lake, REGISTRY, DAY)  # the same day with the right URLs
    assert lake.read_arrow(GOLD_SUFFICIENT_STATS).num_rows
