"""Spark SQL sufficient statistics against an independent pure-Python reading of the contract."""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import fields

import pyarrow as pa
import pytest

from ab_pipelines.analysis.sufficient_stats import experiment_stats, write_day
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, GOLD_SUFFICIENT_STATS
from ab_pipelines.stats.moments import RatioMoments

UTC = dt.UTC
START = dt.date(2026, 3, 1)
DAY = dt.date(2026, 3, 5)
LATE = 1
LOOKBACK = 3

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
}
EXPERIMENT = Experiment(
    id="exp",
    name="Parity",
    owner="a@example.com",
    status="running",
    start_date=START,
    end_date=dt.date(2026, 3, 20),
    variants=[{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
    metrics={
        "primary": ["conversion"],
        "secondary": ["revenue", "orders"],
        "guardrails": [{"metric": "page_load_ms", "max_relative_change": 0.05}],
    },
    overrides={"u-over": "treatment"},
    analysis={"cuped_lookback_days": LOOKBACK, "late_arrival_days": LATE},
)
REGISTRY = Registry(experiments={"exp": EXPERIMENT}, metrics=METRICS)


def _t(day: dt.date, hours: float) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(hours=hours)


def _bronze(seed: int = 7) -> tuple[list[dict], list[dict]]:
    """A few dozen users with every edge case of the contract's windows."""
    rng = random.Random(seed)
    exposures, events = [], []

    def expose(user, variant, ts, arrival=None):
        exposures.append(
            {
                "event_id": f"x{len(exposures)}",
                "user_id": user,
                "experiment_id": "exp",
                "variant": variant,
                "ts": ts,
                "attributes": "{}",
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

    users = [f"u{i:02d}" for i in range(36)]
    for i, user in enumerate(users):
        variant = "control" if i % 2 else "treatment"
        first = _t(START, rng.uniform(-30, 24 * 5.5))  # some before the start, some after D + 1
        for k in range(rng.randint(1, 3)):
            expose(user, variant, first + dt.timedelta(hours=6 * k))
        for _ in range(rng.randint(0, 6)):
            ts = first + dt.timedelta(hours=rng.uniform(-24 * 5, 24 * 5))
            currency = rng.choice(["USD", "USD", "EUR"])
            arrival = ts.date() + dt.timedelta(days=rng.choice([0, 0, 0, 1, 2]))
            event(user, "purchase", rng.randint(1, 400) / 4, ts, {"currency": currency}, arrival)
        for _ in range(rng.randint(0, 4)):
            ts = first + dt.timedelta(hours=rng.uniform(-24 * 4, 24 * 4))
            event(user, "page_view", rng.randint(100, 4000) / 4, ts, {"page": "home"})
    # Named edge cases.
    expose("u-cross", "control", _t(START, 10))
    expose("u-cross", "treatment", _t(START, 30))  # a crossover
    expose("u-over", "treatment", _t(START, 5))  # overridden: never analysed
    event("u-over", "purchase", 50.0, _t(START, 6), {"currency": "USD"})
    expose("u-late", "control", _t(DAY, 3), arrival=DAY + dt.timedelta(days=LATE + 1))  # too late
    expose("u-edge", "control", _t(START, 1))
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
    event("u-none", "purchase", 1.0, _t(START, 3), {"currency": "USD"})  # never exposed
    return exposures, events


def _expected(exposures, events, killed_at=None) -> dict[tuple[str, str], dict]:
    """The contract's rules applied row by row, then RatioMoments.from_values per variant."""
    day_end = _t(DAY, 24)
    last_arrival = DAY + dt.timedelta(days=LATE)
    cutoff = min(day_end, _t(EXPERIMENT.end_date, 24), killed_at or day_end)
    seen: dict[str, list] = {}
    for x in exposures:
        ok = x["arrival_date"] <= last_arrival and x["ts"] < day_end
        ok = ok and _t(START, 0) <= x["ts"] < cutoff and x["user_id"] not in EXPERIMENT.overrides
        if ok:
            seen.setdefault(x["user_id"], []).append((x["ts"], x["variant"]))
    units = {u: (min(s)[0], s[0][1]) for u, s in seen.items() if len({v for _, v in s}) == 1}
    counted = [e for e in events if e["arrival_date"] <= last_arrival and e["ts"] < day_end]

    def agg(user, event, agg_, where, lo, hi):
        rows = [
            e
            for e in counted
            if e["user_id"] == user
            and e["event"] == event
            and lo <= e["ts"] < hi
            and all(json.loads(e["properties"]).get(k) == v for k, v in where.items())
        ]
        if agg_ == "sum":
            return float(sum(e["value"] for e in rows))
        if agg_ == "count":
            return float(len(rows))
        return float(bool(rows))

    out = {}
    for m in METRICS.values():
        cols: dict[str, list[list[float]]] = {}
        for user, (first, variant) in sorted(units.items()):
            hi = day_end
            if m.window_days:
                hi = min(hi, first + dt.timedelta(days=m.window_days))
            pre = (first - dt.timedelta(days=LOOKBACK), first)
            if m.kind == "ratio":
                n, d = m.numerator, m.denominator
                row = [
                    agg(user, n.event, n.agg, n.where, first, hi),
                    agg(user, d.event, d.agg, d.where, first, hi),
                    agg(user, n.event, n.agg, n.where, *pre),
                    agg(user, d.event, d.agg, d.where, *pre),
                ]
            else:
                a = m.agg
                row = [
                    agg(user, m.event, a, m.where, first, hi),
                    1.0,
                    agg(user, m.event, a, m.where, *pre),
                    1.0,
                ]
            cols.setdefault(variant, []).append(row)
        for variant, rows in cols.items():
            moments = RatioMoments.from_values(*zip(*rows, strict=True))
            out[(m.id, variant)] = {f.name: getattr(moments, f.name) for f in fields(moments)}
    crossovers = sum(1 for s in seen.values() if len({v for _, v in s}) > 1)
    return out, crossovers


@pytest.fixture
def lake(home):
    lake = Lake(home)
    exposures, events = _bronze()
    lake.write_arrow(
        BRONZE_EXPOSURES, pa.Table.from_pylist(exposures, schema=BRONZE_EXPOSURES.schema)
    )
    lake.write_arrow(
        BRONZE_METRIC_EVENTS, pa.Table.from_pylist(events, schema=BRONZE_METRIC_EVENTS.schema)
    )
    return lake


def _assert_parity(result, expected, crossovers):
    got = {(r["metric"], r["variant"]): r for r in result.stats.to_pylist()}
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        assert row["experiment_id"] == "exp" and row["segment"] == "all" and row["day"] == DAY
        assert row["n"] == want["n"], key
        for name, value in want.items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, name)
    assert result.crossovers == crossovers


@pytest.mark.spark
@pytest.mark.parametrize("killed_at", [None, _t(DAY, -30)])
def test_spark_matches_pure_python(spark, lake, killed_at):
    exposures, events = _bronze()
    expected, crossovers = _expected(exposures, events, killed_at)
    assert crossovers == 1 and len(expected) == 2 * len(METRICS)
    result = experiment_stats(spark, lake, REGISTRY, "exp", DAY, killed_at=killed_at)
    _assert_parity(result, expected, crossovers)


@pytest.mark.spark
def test_rerun_of_a_day_gives_identical_rows(spark, lake):
    first = write_day(spark, lake, REGISTRY, DAY)
    rows1 = lake.read_arrow(GOLD_SUFFICIENT_STATS).sort_by(
        [("metric", "ascending"), ("variant", "ascending")]
    )
    second = write_day(spark, lake, REGISTRY, DAY)
    rows2 = lake.read_arrow(GOLD_SUFFICIENT_STATS).sort_by(
        [("metric", "ascending"), ("variant", "ascending")]
    )
    assert second.version > first.version
    assert rows1.num_rows == 2 * len(METRICS)
    assert rows1.equals(rows2)
    assert [e.crossovers for e in second.experiments] == [1]
