"""Spark SQL sufficient statistics against an independent pure-Python reading of the contract.

Two experiments share one hand-built bronze:

- ``exp`` (unit user_id): every edge case of the windows, a third variant nobody is exposed to
  (n = 0 rows), winsorized mean and ratio metrics (and a winsorized proportion: a no-op), and
  segments on two attributes with more values than ``segment_top_n`` (``other`` pooling,
  ``(missing)`` for absent and JSON-null attributes, the first exposure's attributes win);
  windowed metrics with units still maturing and units exactly at the maturity boundary (a
  2-day window, a "day 1" retention window, and the 2-day window with ``include_maturing``);
- ``exp_team`` (unit team_id, an exposure attribute): users sharing a team, a user in two teams,
  a crossover team, an overridden team, exposures without a team.

A third bronze (``_window_bronze``) checks conversion windows and retention against a pandas
recomputation: a day-7 retention metric and 7-day conversion metrics on several analysis days,
from a day when every unit is still maturing to one when most have matured.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ab_pipelines.analysis.sufficient_stats import experiment_stats, write_day
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SUFFICIENT_STATS,
    TableSpec,
)
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
    # Retention on the day after exposure: window [first + 1 day, first + 2 days).
    "viewed_d1": Metric(
        id="viewed_d1",
        kind="proportion",
        event="page_view",
        agg="any",
        window_start_days=1,
        window_days=1,
    ),
    # revenue's window with the old rule: maturing units count with their partial window.
    "revenue_all": Metric(
        id="revenue_all",
        kind="mean",
        event="purchase",
        agg="sum",
        where={"currency": "USD"},
        window_days=2,
        include_maturing=True,
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
        "secondary": [
            "revenue",
            "orders",
            "revenue_w",
            "conversion_w",
            "viewed_d1",
            "revenue_all",
        ],
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
    # Maturity boundaries of the 2-day windows (revenue, viewed_d1): u-bound's windows end exactly
    # at D + 1 day (complete: it counts); u-bound2's a second later (maturing).
    bound = _t(DAY, 24) - dt.timedelta(days=2)
    expose("u-bound", "treatment", bound, platform="ios", country="US")
    event("u-bound", "page_view", 300.0, bound + dt.timedelta(days=1))  # viewed_d1's start: in
    event("u-bound", "page_view", 300.0, bound + dt.timedelta(days=1, seconds=-1))  # before it
    event("u-bound", "purchase", 8.0, bound + dt.timedelta(days=2, seconds=-1), {"currency": "USD"})
    expose("u-bound2", "control", bound + dt.timedelta(seconds=1), platform="ios", country="US")
    event("u-bound2", "purchase", 6.0, bound + dt.timedelta(hours=1), {"currency": "USD"})
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
    ``crossovers``, plus ``members``, ``capped`` (how many values each cap changed) and
    ``maturing`` (metric -> the units left out) so that the test can check the data really
    exercises the rules.

    Windows: [first + window_start_days, min(D + 1 day, first + window_start_days + window_days));
    a windowed metric counts only the units whose whole window has ended by D + 1 day, unless
    include_maturing (this recomputation encoded the old partial-window rule for every windowed
    metric before maturity existed).
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
    maturing: dict[str, set[str]] = {}
    for m in metrics:
        values[m.id] = {}
        maturing[m.id] = set()
        for u, (first, _, _) in units.items():
            lo, hi = first, day_end
            if m.window_days:
                lo = first + dt.timedelta(days=m.window_start_days)
                end = first + dt.timedelta(days=m.window_start_days + m.window_days)
                hi = min(hi, end)
                if end > day_end and not m.include_maturing:
                    maturing[m.id].add(u)
            pre = (first - lookback, first)
            users = members[u]
            if m.kind == "ratio":
                n, d = m.numerator, m.denominator
                row = [
                    agg(users, n.event, n.agg, n.where, lo, hi),
                    agg(users, d.event, d.agg, d.where, lo, hi),
                    agg(users, n.event, n.agg, n.where, *pre),
                    agg(users, d.event, d.agg, d.where, *pre),
                ]
            else:
                a = m.agg
                row = [
                    agg(users, m.event, a, m.where, lo, hi),
                    1.0,
                    agg(users, m.event, a, m.where, *pre),
                    1.0,
                ]
            values[m.id][u] = row
        # Winsorizing: upper caps on num and pre_num (each its own percentile over the units that
        # count, variants pooled); never the denominators; a proportion is never capped.
        counting = [r for u, r in values[m.id].items() if u not in maturing[m.id]]
        if m.winsorize is not None and m.kind != "proportion" and counting:
            for i, name in ((0, "num"), (2, "pre_num")):
                cap = float(np.percentile([r[i] for r in counting], 100 * m.winsorize))
                capped[(m.id, name)] = sum(r[i] > cap for r in counting)
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
                group = [u for u in values[m.id] if units[u][1] == variant and segment in labels[u]]
                rows = [values[m.id][u] for u in group if u not in maturing[m.id]]
                cols = [[r[i] for r in rows] for i in range(4)]
                moments = RatioMoments.from_values(*cols)
                stats[(segment, m.id, variant)] = {f: getattr(moments, f) for f in STAT_FIELDS}
                stats[(segment, m.id, variant)]["maturing"] = len(group) - len(rows)
    return {
        "stats": stats,
        "units": unit_counts,
        "crossovers": crossovers,
        "members": members,
        "capped": capped,
        "maturing": maturing,
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
        assert row["maturing"] == expected["maturing"], key
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
    # Maturity: the 2-day windows leave out the units exposed in the last 2 days, u-bound (its
    # windows end exactly at D + 1 day) counts, u-bound2 (a second later) is maturing.
    for m in ("revenue", "viewed_d1"):
        assert "u-bound2" in want["maturing"][m] and "u-bound" not in want["maturing"][m]
        assert len(want["maturing"][m]) >= 3
    assert want["maturing"]["revenue_all"] == want["maturing"]["orders"] == set()
    for variant in ("control", "treatment"):
        key = ("all", "revenue", variant)
        both = want["stats"][key]["n"] + want["stats"][key]["maturing"]
        assert both == want["stats"][("all", "revenue_all", variant)]["n"] > 0
        assert want["stats"][("all", "revenue_all", variant)]["maturing"] == 0
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


# ---- conversion windows and retention, against pandas -------------------------------------------
W_START = dt.date(2026, 4, 1)
W_DAY = W_START + dt.timedelta(days=12)  # most units have matured by then
W_LOOKBACK = 2
W_METRICS = {
    # Active on day 7 after exposure: any page view in [first + 7 days, first + 8 days).
    "retained_d7": Metric(
        id="retained_d7",
        kind="proportion",
        event="page_view",
        agg="any",
        window_start_days=7,
        window_days=1,
    ),
    # Converted within 7 days of first exposure, and what the units bought in those 7 days.
    "converted_7d": Metric(
        id="converted_7d", kind="proportion", event="purchase", agg="any", window_days=7
    ),
    "revenue_7d": Metric(
        id="revenue_7d", kind="mean", event="purchase", agg="sum", window_days=7, winsorize=0.8
    ),
    "aov_7d": Metric(
        id="aov_7d",
        kind="ratio",
        numerator={"event": "purchase", "agg": "sum"},
        denominator={"event": "purchase", "agg": "count"},
        window_days=7,
    ),
    # The same windows with the old rule: maturing units count with the window seen so far.
    "converted_7d_all": Metric(
        id="converted_7d_all",
        kind="proportion",
        event="purchase",
        agg="any",
        window_days=7,
        include_maturing=True,
    ),
    "retained_d7_all": Metric(
        id="retained_d7_all",
        kind="proportion",
        event="page_view",
        agg="any",
        window_start_days=7,
        window_days=1,
        include_maturing=True,
    ),
    "page_views": Metric(id="page_views", kind="mean", event="page_view", agg="count"),
}
W_EXPERIMENT = Experiment(
    id="exp_window",
    name="Windows",
    owner="a@example.com",
    status="running",
    start_date=W_START,
    variants=[{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
    metrics={
        "primary": ["converted_7d"],
        "secondary": [m for m in W_METRICS if m != "converted_7d"],
    },
    analysis={"cuped_lookback_days": W_LOOKBACK, "late_arrival_days": LATE},
)
W_REGISTRY = Registry(experiments={W_EXPERIMENT.id: W_EXPERIMENT}, metrics=W_METRICS)


def _window_bronze(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units exposed over 12 days with page views and purchases around their exposure, and named
    units on every boundary of the windows ending at W_DAY + 1 day."""
    rng = np.random.default_rng(seed)
    exposures, events = [], []
    start = _t(W_START, 0)

    def expose(user, variant, ts):
        exposures.append((f"x{len(exposures)}", user, "exp_window", variant, ts))

    def event(user, name, value, ts):
        events.append((f"e{len(events)}", user, name, float(value), ts))

    for i in range(90):
        user, variant = f"w{i:02d}", ("control", "treatment")[i % 2]
        first = start + dt.timedelta(seconds=int(rng.integers(0, 13 * 86400)))
        for k in range(int(rng.integers(1, 3))):
            expose(user, variant, first + dt.timedelta(hours=20 * k))
        for day in range(-W_LOOKBACK - 1, 12):  # a page view on about half of the days
            if rng.random() < 0.5:
                event(
                    user, "page_view", 1, first + dt.timedelta(hours=24 * day + rng.uniform(0, 24))
                )
        for _ in range(int(rng.poisson(1.5))):
            ts = first + dt.timedelta(hours=rng.uniform(-24 * W_LOOKBACK, 24 * 10))
            event(user, "purchase", rng.integers(1, 200), ts)
    day_end = _t(W_DAY, 24)
    # retained_d7's window [first + 7 days, first + 8 days) ends exactly at D + 1 day: it counts
    # (its page view at the window's first instant is in); a second later: maturing.
    first = day_end - dt.timedelta(days=8)
    expose("ret-edge", "treatment", first)
    event("ret-edge", "page_view", 1, first + dt.timedelta(days=7))
    expose("ret-late", "control", first + dt.timedelta(seconds=1))
    event("ret-late", "page_view", 1, first + dt.timedelta(days=7, seconds=2))
    # converted_7d's window ends exactly at D + 1 day: counts; a second later: maturing.
    first = day_end - dt.timedelta(days=7)
    expose("conv-edge", "control", first)
    event("conv-edge", "purchase", 40, first + dt.timedelta(days=7, seconds=-1))
    expose("conv-late", "treatment", first + dt.timedelta(seconds=1))
    event("conv-late", "purchase", 30, first + dt.timedelta(hours=1))
    # Events just outside mature windows: a page view a second before day 7 and one at the first
    # instant of day 8; a purchase at first + 7 days (the window's end, excluded).
    first = start + dt.timedelta(hours=3)
    expose("ends", "control", first)
    event("ends", "page_view", 1, first + dt.timedelta(days=7, seconds=-1))
    event("ends", "page_view", 1, first + dt.timedelta(days=8))
    event("ends", "purchase", 25, first + dt.timedelta(days=7))
    event("ends", "purchase", 5, first - dt.timedelta(hours=1))  # pre-period
    x = pd.DataFrame(exposures, columns=["event_id", "user_id", "experiment_id", "variant", "ts"])
    e = pd.DataFrame(events, columns=["event_id", "user_id", "event", "value", "ts"])
    for df in (x, e):
        df["arrival_date"] = df["ts"].map(lambda t: t.date())
    x["attributes"], e["properties"] = "{}", "{}"
    return x, e


def _window_lake(home) -> Lake:
    lake = Lake(home)
    x, e = _window_bronze()
    for spec, df in ((BRONZE_EXPOSURES, x), (BRONZE_METRIC_EVENTS, e)):
        lake.write_arrow(spec, pa.Table.from_pylist(df.to_dict("records"), schema=spec.schema))
    return lake


def _window_expected(day: dt.date, old_rule: bool = False) -> tuple[pd.DataFrame, dict]:
    """pandas: per unit and metric the value and whether it counts, and per (metric, variant) the
    sums of the counted units and the maturing count. ``old_rule``: the partial-window rule
    before maturity ([first, min(D + 1 day, first + window_days)), every unit counts)."""
    x, e = _window_bronze()
    day_end = pd.Timestamp(_t(day, 24))
    x = x[(x["ts"] >= pd.Timestamp(_t(W_START, 0))) & (x["ts"] < day_end)]
    units = x.groupby("user_id").agg(first=("ts", "min"), variant=("variant", "first"))
    assert (x.groupby("user_id")["variant"].nunique() == 1).all()  # no crossovers here
    e = e[e["ts"] < day_end]
    lookback = pd.Timedelta(days=W_LOOKBACK)

    def aggregate(event: str, agg: str, lo: pd.Series, hi: pd.Series) -> pd.Series:
        rows = e[e["event"] == event].join(units, on="user_id", how="inner")
        rows = rows[(rows["ts"] >= lo.loc[rows["user_id"]].to_numpy())]
        rows = rows[(rows["ts"] < hi.loc[rows["user_id"]].to_numpy())]
        g = rows.groupby("user_id")["value"]
        out = {"sum": g.sum(), "count": g.size(), "any": g.size().clip(upper=1)}[agg]
        return out.reindex(units.index, fill_value=0).astype(float)

    per_unit = []
    for m in W_METRICS.values():
        first = units["first"]
        if m.window_days is None:
            lo, end = first, pd.Series(day_end, index=units.index)
        elif old_rule:
            lo, end = first, first + pd.Timedelta(days=m.window_days)
        else:
            lo = first + pd.Timedelta(days=m.window_start_days)
            end = lo + pd.Timedelta(days=m.window_days)
        hi = end.clip(upper=day_end)
        counts = old_rule or m.window_days is None or m.include_maturing
        v = pd.DataFrame({"variant": units["variant"], "mature": counts | (end <= day_end)})
        top = m.numerator if m.kind == "ratio" else m
        v["num"] = aggregate(top.event, top.agg, lo, hi)
        v["pre_num"] = aggregate(top.event, top.agg, first - lookback, first)
        v["den"] = v["pre_den"] = 1.0
        if m.kind == "ratio":
            bottom = m.denominator
            v["den"] = aggregate(bottom.event, bottom.agg, lo, hi)
            v["pre_den"] = aggregate(bottom.event, bottom.agg, first - lookback, first)
        if m.winsorize is not None and v["mature"].any():
            for col in ("num", "pre_num"):  # caps over the units that count
                cap = np.percentile(v.loc[v["mature"], col], 100 * m.winsorize)
                v[col] = v[col].clip(upper=cap)
        per_unit.append(v.assign(metric=m.id))
    per_unit = pd.concat(per_unit).rename_axis("unit").reset_index()

    stats = {}
    for m in sorted(W_METRICS):
        for variant in W_EXPERIMENT.variant_ids:
            g = per_unit[(per_unit["metric"] == m) & (per_unit["variant"] == variant)]
            c = g[g["mature"]]
            moments = RatioMoments.from_values(
                *(c[col].to_numpy() for col in ("num", "den", "pre_num", "pre_den"))
            )
            row = {f: getattr(moments, f) for f in STAT_FIELDS}
            stats[(m, variant)] = {**row, "maturing": int((~g["mature"]).sum())}
    return per_unit, stats


def _assert_window_rows(result, stats: dict, metric_map: dict | None = None) -> None:
    rows = {(r["metric"], r["variant"]): r for r in result.stats.to_pylist()}
    assert {r["segment"] for r in rows.values()} == {"all"}
    for (metric, variant), want in stats.items():
        row = rows[(metric_map or {}).get(metric, metric), variant]
        assert (row["n"], row["maturing"]) == (want["n"], want["maturing"]), (metric, variant)
        for name in STAT_FIELDS[1:]:
            assert row[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), (metric, name)
        # Every analysed unit is counted or maturing.
        assert row["n"] + row["maturing"] == result.units["all"][variant]


def test_the_window_reference_sees_every_boundary():
    per_unit, stats = _window_expected(W_DAY)
    v = per_unit.set_index(["metric", "unit"])
    # Exactly at the boundary: counted, with the event at the window's first instant / last second.
    assert (
        v.loc[("retained_d7", "ret-edge"), "mature"] and v.loc[("retained_d7", "ret-edge"), "num"]
    )
    assert v.loc[("converted_7d", "conv-edge"), "mature"]
    assert v.loc[("revenue_7d", "conv-edge"), "num"] == 40
    # A second later: maturing; with include_maturing counted with the window seen so far.
    assert not v.loc[("retained_d7", "ret-late"), "mature"]
    assert v.loc[("retained_d7_all", "ret-late"), "mature"]
    assert v.loc[("retained_d7_all", "ret-late"), "num"] == 1  # all but its day 7's last second
    assert not v.loc[("converted_7d", "conv-late"), "mature"]
    assert v.loc[("converted_7d_all", "conv-late"), ["mature", "num"]].tolist() == [True, 1.0]
    # Just outside a window: not counted.
    assert v.loc[("retained_d7", "ends"), ["mature", "num"]].tolist() == [True, 0.0]
    assert v.loc[("converted_7d", "ends"), ["num", "pre_num"]].tolist() == [0.0, 1.0]
    # Both counted and maturing units in each arm, for the windowed metrics only.
    for m in ("retained_d7", "converted_7d", "revenue_7d", "aov_7d"):
        for variant in ("control", "treatment"):
            assert stats[(m, variant)]["n"] > 5 and stats[(m, variant)]["maturing"] > 5
    for m in ("converted_7d_all", "retained_d7_all", "page_views"):
        assert all(stats[(m, variant)]["maturing"] == 0 for variant in ("control", "treatment"))
    # The day-7 retention waits a day longer than the 7-day conversion.
    assert stats[("retained_d7", "control")]["n"] < stats[("converted_7d", "control")]["n"]


@pytest.mark.spark
@pytest.mark.parametrize("offset", [8, 12])
def test_spark_windows_match_pandas(spark, home, offset):
    day = W_START + dt.timedelta(days=offset)
    result = experiment_stats(spark, _window_lake(home), W_REGISTRY, "exp_window", day)
    _assert_window_rows(result, _window_expected(day)[1])


@pytest.mark.spark
def test_include_maturing_keeps_the_old_partial_window_numbers(spark, home):
    """With include_maturing a windowed metric gives what every windowed metric gave before the
    maturity rule: [first, min(D + 1 day, first + window_days)) for every analysed unit."""
    result = experiment_stats(spark, _window_lake(home), W_REGISTRY, "exp_window", W_DAY)
    _, old = _window_expected(W_DAY, old_rule=True)
    _assert_window_rows(
        result,
        {k: w for k, w in old.items() if k[0] == "converted_7d"},
        metric_map={"converted_7d": "converted_7d_all"},
    )
    rows = {(r["metric"], r["variant"]): r for r in result.stats.to_pylist()}
    for variant in ("control", "treatment"):
        new, kept = rows[("converted_7d", variant)], rows[("converted_7d_all", variant)]
        assert kept["maturing"] == 0 and kept["n"] == new["n"] + new["maturing"]


@pytest.mark.spark
def test_a_day_when_every_unit_is_maturing_gives_n_0(spark, home):
    """Four days in, no 7-day window has ended: n = 0, sums 0.0, every unit maturing; the results
    step reads those rows without an error (estimates null)."""
    from ab_pipelines.analysis.day import results_day, stats_day

    lake, day = _window_lake(home), W_START + dt.timedelta(days=3)
    stats_day(spark, lake, W_REGISTRY, day)
    results_day(lake, W_REGISTRY, day)
    rows = {
        (r["metric"], r["variant"]): r for r in lake.read_arrow(GOLD_SUFFICIENT_STATS).to_pylist()
    }
    _, want = _window_expected(day)
    units = {v: want[("page_views", v)]["n"] for v in ("control", "treatment")}
    assert all(n > 5 for n in units.values())
    for m in ("retained_d7", "converted_7d", "revenue_7d", "aov_7d"):
        for variant, n in units.items():
            row = rows[(m, variant)]
            assert (row["n"], row["maturing"]) == (0, n)
            assert all(row[f] == 0.0 for f in STAT_FIELDS[1:])
    assert rows[("converted_7d_all", "control")]["n"] == units["control"]
    results = lake.read_arrow(GOLD_EXPERIMENT_RESULTS).to_pylist()
    primary = [r for r in results if r["metric"] == "converted_7d"]
    assert primary and primary[0]["n_baseline"] == 0 and primary[0]["rel_p_value"] is None


@pytest.mark.spark
def test_maturing_is_added_to_a_table_written_before_it(spark, home):
    """A gold.sufficient_stats written before the column existed gains it on the next write; its
    old rows read maturing as null, the new ones as counts."""
    lake = _window_lake(home)
    old = TableSpec(
        GOLD_SUFFICIENT_STATS.tier,
        GOLD_SUFFICIENT_STATS.name,
        pa.schema([f for f in GOLD_SUFFICIENT_STATS.schema if f.name != "maturing"]),
        GOLD_SUFFICIENT_STATS.partition_by,
        GOLD_SUFFICIENT_STATS.keys,
    )
    earlier = W_DAY - dt.timedelta(days=1)
    stats = experiment_stats(spark, lake, W_REGISTRY, "exp_window", earlier).stats
    lake.write_arrow(old, stats.drop(["maturing"]), replace=[{"day": earlier.isoformat()}])
    assert "maturing" not in lake.dataset(GOLD_SUFFICIENT_STATS).schema.names
    write_day(spark, lake, W_REGISTRY, W_DAY)
    t = lake.read_arrow(GOLD_SUFFICIENT_STATS)
    assert t.schema == GOLD_SUFFICIENT_STATS.schema
    by_day = {d: [r for r in t.to_pylist() if r["day"] == d] for d in (earlier, W_DAY)}
    assert by_day[earlier] and all(r["maturing"] is None for r in by_day[earlier])
    assert any(r["maturing"] for r in by_day[W_DAY])
    assert all(r["maturing"] is not None for r in by_day[W_DAY])
