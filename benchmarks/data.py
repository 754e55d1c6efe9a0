"""Synthetic bronze tables for the analysis and scaling benchmarks, written as parquet directly.

At scale 1: 2,000,000 users and 20,000,000 metric events over 22 days (the 7-day CUPED pre-period
before the start and 15 days of the experiments), and about 3.9 million exposures to two
experiments:

- ``bench_all``: every user, 50/50, metrics conversion, revenue (winsorized, ``where`` on
  currency), orders (7-day window), page_load_ms and revenue_per_order (ratios);
- ``bench_half``: half of the users, 3 variants, metrics conversion, orders, page_load_ms.

30% of the users see an experiment twice, and 0.1% of them in two variants (crossovers). Events
are page_view (70%, value = load time), add_to_cart (20%) and purchase (10%, value = revenue,
80% USD). The tables are real Delta tables of the project's bronze schema (committed through
``Lake.write_arrow``), so both engines read the same parquet files. A table is made once per
scale under ``.bench-data/`` (git-ignored; about 0.6 GB at scale 1) and reused.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.config.models import Experiment
from ab_pipelines.config.registry import Registry, load_registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS
from ab_pipelines.settings import REPO_ROOT, Paths

__all__ = ["BenchData", "DAY", "START", "bench_registry", "make_data"]

DATA_ROOT = REPO_ROOT / ".bench-data"
USERS_AT_1X = 2_000_000
EVENTS_AT_1X = 20_000_000
START = dt.date(2026, 6, 1)
DAY = START + dt.timedelta(days=14)  # the analysis day: 15 days of exposures
LOOKBACK_DAYS = 7
FORMAT = 2  # bump when the generated data changes, so old folders are rebuilt
CHUNK = 2_000_000
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True)
class BenchData:
    scale: float
    home: Path
    users: int
    events: int
    exposures: int

    @property
    def lake(self) -> Lake:
        return Lake(Paths(self.home))


def bench_registry() -> Registry:
    """The repository's metrics and the two benchmark experiments."""
    metrics = load_registry(REPO_ROOT).metrics

    def exp(id_: str, variants: list[str], primary: list[str], secondary: list[str]):
        return Experiment(
            id=id_,
            name=id_,
            owner="bench",
            status="running",
            start_date=START,
            variants=[{"id": v, "weight": 1 / len(variants)} for v in variants],
            metrics={"primary": primary, "secondary": secondary},
            analysis={"cuped_lookback_days": LOOKBACK_DAYS, "late_arrival_days": 1},
        )

    experiments = {
        "bench_all": exp(
            "bench_all",
            ["control", "treatment"],
            ["conversion", "revenue"],
            ["orders", "page_load_ms", "revenue_per_order"],
        ),
        "bench_half": exp(
            "bench_half", ["control", "b", "c"], ["conversion"], ["orders", "page_load_ms"]
        ),
    }
    return Registry(experiments=experiments, metrics=metrics)


def _epoch_us(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


def _ids(prefix: str, ints: np.ndarray, width: int) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(ints), pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def _ts(us: np.ndarray) -> tuple[pa.Array, pa.Array]:
    ts = pa.array(us, pa.timestamp("us", tz="UTC"))
    return ts, pc.cast(pc.cast(ts, pa.timestamp("us")), pa.date32())


def _bronze(spec, cols: dict[str, pa.Array], n: int, first_line: int) -> pa.Table:
    cols = {
        **cols,
        "kafka_partition": pa.array(np.zeros(n, np.int64)),
        "kafka_offset": pa.array(np.arange(first_line, first_line + n, dtype=np.int64)),
        "kafka_timestamp": cols["ts"],
        "source_file": pa.array(["bench.jsonl"] * n, pa.string()),
        "source_line": pa.array(np.arange(first_line + 1, first_line + n + 1, dtype=np.int64)),
    }
    return pa.table(
        {f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in spec.schema}, schema=spec.schema
    )


def _exposures(rng: np.random.Generator, users: int) -> pa.Table:
    begin, end = _epoch_us(START), _epoch_us(DAY + dt.timedelta(days=1))
    parts = []
    for exp_id, share, variants in (
        ("bench_all", 1.0, ["control", "treatment"]),
        ("bench_half", 0.5, ["control", "b", "c"]),
    ):
        who = np.flatnonzero(rng.random(users) < share)
        arm = rng.integers(0, len(variants), who.size)
        first = rng.integers(begin, end, who.size)
        again = rng.random(who.size) < 0.3
        cross = again & (rng.random(who.size) < 1 / 300)  # 0.1% of all: a second variant
        later = first[again] + rng.integers(0, end - first[again])
        arm2 = np.where(cross[again], (arm[again] + 1) % len(variants), arm[again])
        user = np.concatenate([who, who[again]])
        parts.append(
            (
                exp_id,
                user,
                np.array(variants)[np.concatenate([arm, arm2])],
                np.concatenate([first, later]),
            )
        )
    n = sum(p[1].size for p in parts)
    ts, day = _ts(np.concatenate([p[3] for p in parts]))
    cols = {
        "event_id": _ids("x", np.arange(n), 9),
        "user_id": _ids("u", np.concatenate([p[1] for p in parts]), 7),
        "experiment_id": pa.array(np.concatenate([np.full(p[1].size, p[0]) for p in parts])),
        "variant": pa.array(np.concatenate([p[2] for p in parts])),
        "ts": ts,
        "config_version": pa.array(np.ones(n, np.int64)),
        "source": pa.array(["bench"] * n, pa.string()),
        "attributes": pa.array(["{}"] * n, pa.string()),
        "arrival_date": day,
    }
    return _bronze(BRONZE_EXPOSURES, cols, n, 0)


_PROPERTIES = {
    "page_view": ['{"page":"home"}', '{"page":"search"}', '{"page":"product"}'],
    "add_to_cart": ['{"page":"product"}'],
}
_CURRENCY = ['{"currency":"USD"}', '{"currency":"EUR"}']


def _events(rng: np.random.Generator, users: int, n: int, first: int) -> pa.Table:
    begin = _epoch_us(START - dt.timedelta(days=LOOKBACK_DAYS))
    end = _epoch_us(DAY + dt.timedelta(days=1))
    kind = rng.choice(3, n, p=[0.7, 0.2, 0.1])  # page_view, add_to_cart, purchase
    names = np.array(["page_view", "add_to_cart", "purchase"])[kind]
    value = np.where(
        kind == 0,
        rng.lognormal(6.5, 0.4, n).round(1),
        np.where(kind == 2, rng.lognormal(3.5, 1.0, n).round(2), 1.0),
    )
    page = np.array(_PROPERTIES["page_view"])[rng.integers(0, 3, n)]
    currency = np.array(_CURRENCY)[(rng.random(n) < 0.2).astype(int)]
    props = np.where(kind == 0, page, np.where(kind == 2, currency, _PROPERTIES["add_to_cart"][0]))
    ts, day = _ts(rng.integers(begin, end, n))
    cols = {
        "event_id": _ids("m", np.arange(first, first + n), 9),
        "user_id": _ids("u", rng.integers(0, users, n), 7),
        "event": pa.array(names),
        "value": pa.array(value),
        "ts": ts,
        "properties": pa.array(props),
        "arrival_date": day,
    }
    return _bronze(BRONZE_METRIC_EVENTS, cols, n, first)


def make_data(scale: float, root: Path = DATA_ROOT, seed: int = 8) -> BenchData:
    """The bronze tables at ``scale`` (1 = 20M events), made once and reused."""
    users, events = int(USERS_AT_1X * scale), int(EVENTS_AT_1X * scale)
    home = root / f"scale-{scale:g}"
    marker = home / "bench-data.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        if meta.get("format") == FORMAT:
            return BenchData(scale, home, users, events, meta["exposures"])
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    lake = Lake(Paths(home))
    rng = np.random.default_rng(seed)
    exposures = _exposures(rng, users)
    lake.write_arrow(BRONZE_EXPOSURES, exposures)
    for first in range(0, events, CHUNK):
        lake.write_arrow(
            BRONZE_METRIC_EVENTS, _events(rng, users, min(CHUNK, events - first), first)
        )
    marker.write_text(json.dumps({"format": FORMAT, "exposures": exposures.num_rows}))
    return BenchData(scale, home, users, events, exposures.num_rows)
