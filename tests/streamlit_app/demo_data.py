"""Demo-like tables for the dashboard tests, built with the project's own functions (no Spark).

Per analysis day and running experiment of a copy of the repo's registry: per-unit values drawn
with numpy become ``RatioMoments`` (what the Spark step would hand over), and the numpy step
(``experiment_results``, ``srm_rows``, ``health_rows``) turns them into the gold tables, exactly as
``gold/experiment_results`` does. Then silver.exposure_counts, ops.dq_results, bronze.quarantine,
the alerts of each day (``reconcile_day``), a published edge config and a kill.

Planted, as in ``abp demo``: ``recs_ranking`` has a broken split (SRM flagged), ``hero_video`` slows
pages by 15% (its guardrail is breached, and it is killed), ``search_speed`` cuts page load by 10%
and has exploratory segments by platform.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis.bandits import bandit_weight_rows
from ab_pipelines.analysis.differential import heterogeneity_rows
from ab_pipelines.analysis.results import experiment_results, health_rows, srm_flagged, srm_rows
from ab_pipelines.config import load_registry
from ab_pipelines.config.allocations import Period
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.publish import kill, publish
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    BRONZE_QUARANTINE,
    GOLD_BANDIT_WEIGHTS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_HETEROGENEITY,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    OPS_DQ_RESULTS,
    SILVER_EXPOSURE_COUNTS,
)
from ab_pipelines.safety import reconcile_day
from ab_pipelines.settings import REPO_ROOT, Paths
from ab_pipelines.stats import RatioMoments

DAYS = 4
UNITS_PER_DAY = 1200  # per arm
# (experiment, metric) -> relative lift of every non-baseline variant
LIFTS = {
    ("hero_video", "page_load_ms"): 0.15,
    ("search_speed", "page_load_ms"): -0.10,
    ("checkout_cta", "conversion"): 0.08,
    ("recs_ranking", "revenue"): 0.03,
}
SRM_SKEW = {"recs_ranking": 0.06}  # the baseline gets this much more than its share
KILLED = "hero_video"
SEGMENTS = {"platform": (("ios", 0.6), ("android", 0.4))}
# A segment whose effect differs (the differential-impact flag): lite saves 25% on android only.
SEGMENT_LIFTS = {("search_speed", "page_load_ms", "platform=android"): -0.25}


@dataclass(frozen=True)
class Demo:
    home: Paths
    registry_root: Path
    days: tuple[dt.date, ...]
    killed_at: dt.datetime

    @property
    def last_day(self) -> dt.date:
        return self.days[-1]


def copy_registry(into: Path) -> Path:
    """A copy of the repo's registry (experiments, metrics, holdouts, units) that tests may change."""
    into.mkdir(parents=True, exist_ok=True)
    for folder in ("experiments", "metrics", "holdouts"):
        shutil.copytree(REPO_ROOT / folder, into / folder)
    if (REPO_ROOT / "units.yaml").exists():
        shutil.copy2(REPO_ROOT / "units.yaml", into / "units.yaml")
    return into


def _values(rng, metric: Metric, n: int, lift: float) -> tuple[np.ndarray, ...]:
    """Per-unit (num, den, pre_num, pre_den) of one arm, with the pre-period correlated."""
    ones = np.ones(n)
    if metric.kind == "proportion":
        base = rng.uniform(0.05, 0.2, n)
        return (
            (rng.random(n) < base * (1 + lift)).astype(float),
            ones,
            (rng.random(n) < base).astype(float),
            ones,
        )
    if metric.kind == "mean":
        pre = rng.gamma(2.0, 5.0, n)
        return np.maximum(0.0, 0.6 * pre + rng.normal(0, 4, n)) * (1 + lift), ones, pre, ones
    views = rng.poisson(5, n) + 1.0
    pre_views = rng.poisson(5, n) + 1.0
    speed = rng.gamma(4.0, 200.0, n)
    return views * speed * (1 + lift), views, pre_views * speed * rng.gamma(50, 0.02, n), pre_views


def _arm_sizes(exp: Experiment, n: int, rng) -> dict[str, int]:
    """Units per arm: binomial noise around the weights, plus the planted skew of a broken split."""
    skew = SRM_SKEW.get(exp.id, 0.0)
    total = n * len(exp.variants)
    out = {}
    for i, v in enumerate(exp.variants):
        share = v.weight * ((1 + skew) if i == 0 else (1 - skew))
        out[v.id] = int(rng.binomial(total, min(share, 1.0)))
    return out


def _stats_rows(
    exp: Experiment,
    metrics: Mapping[str, Metric],
    day: dt.date,
    sizes: Mapping[str, int],
    segment: str,
    rng,
) -> list[dict]:
    rows = []
    for mid in dict.fromkeys(exp.metric_ids()):
        for i, (variant, n) in enumerate(sizes.items()):
            planted = SEGMENT_LIFTS.get((exp.id, mid, segment), LIFTS.get((exp.id, mid), 0.0))
            lift = 0.0 if i == 0 else planted
            m = RatioMoments.from_values(*_values(rng, metrics[mid], n, lift))
            rows.append(
                {
                    **m.__dict__,
                    "experiment_id": exp.id,
                    "metric": mid,
                    "variant": variant,
                    "segment": segment,
                    "day": day,
                }
            )
    return rows


def _day_tables(registry, day: dt.date, killed_at: dt.datetime | None, seed: int):
    stats_all, results, srm, health, hetero, bandit = [], [], [], [], [], []
    for exp in sorted(registry.experiments.values(), key=lambda e: e.id):
        if exp.status != "running" or exp.start_date > day:
            continue
        rng = np.random.default_rng([seed, day.toordinal(), len(exp.id)])
        sizes = _arm_sizes(exp, UNITS_PER_DAY * ((day - exp.start_date).days + 1), rng)
        rows = _stats_rows(exp, registry.metrics, day, sizes, "all", rng)
        units = {"all": sizes}
        if exp.analysis.segments:
            attr, values = next(iter(SEGMENTS.items()))
            for value, share in values:
                seg_sizes = {v: int(n * share) for v, n in sizes.items()}
                segment = f"{attr}={value}"
                rows += _stats_rows(exp, registry.metrics, day, seg_sizes, segment, rng)
                units[segment] = seg_sizes
        stats = pa.Table.from_pylist(rows, schema=GOLD_SUFFICIENT_STATS.schema)
        srm_t = srm_rows(exp, day, units)
        kill_t = killed_at if exp.id == KILLED else None
        stats_all.append(stats)
        srm.append(srm_t)
        results.append(
            experiment_results(exp, registry.metrics, day, stats, srm_flagged(srm_t), kill_t)
        )
        health.append(
            health_rows(
                exp, registry.metrics, day, stats, sizes, crossovers=sum(sizes.values()) // 400
            )
        )
        hetero.append(heterogeneity_rows(exp, registry.metrics, day, stats))
        if exp.is_bandit:  # one allocation period (the YAML's), the weights it would publish
            by_key = {(r["metric"], r["variant"], r["segment"]): r for r in stats.to_pylist()}
            first = Period(1, None, tuple(v.weight for v in exp.variants))
            metric = registry.metrics[exp.bandit.metric]
            bandit.append(bandit_weight_rows(exp, metric, day, by_key, [first], ended=False))
    return {
        GOLD_BANDIT_WEIGHTS: pa.concat_tables(bandit),
        GOLD_HETEROGENEITY: pa.concat_tables(hetero),
        GOLD_SUFFICIENT_STATS: pa.concat_tables(stats_all),
        GOLD_EXPERIMENT_RESULTS: pa.concat_tables(results),
        GOLD_SRM: pa.concat_tables(srm),
        GOLD_HEALTH: pa.concat_tables(health),
    }


def write_exposures(lake: Lake, registry, day: dt.date, killed_at: dt.datetime) -> None:
    """silver.exposure_counts of event day ``day``, split over two arrival days."""
    rows = []
    rng = np.random.default_rng(day.toordinal())
    for exp in sorted(registry.experiments.values(), key=lambda e: e.id):
        if exp.status != "running" or exp.start_date > day:
            continue
        if exp.id == KILLED and day > killed_at.date():
            continue  # killed: the SDK logs no exposure any more
        for variant, n in _arm_sizes(exp, UNITS_PER_DAY, rng).items():
            for arrival, share in ((day, 0.9), (day + dt.timedelta(days=1), 0.1)):
                count = int(n * 1.3 * share)
                rows.append(
                    {
                        "event_date": day,
                        "experiment_id": exp.id,
                        "variant": variant,
                        "exposures": count,
                        "units": int(count / 1.3),
                        "arrival_date": arrival,
                    }
                )
    lake.write_arrow(
        SILVER_EXPOSURE_COUNTS, pa.Table.from_pylist(rows, schema=SILVER_EXPOSURE_COUNTS.schema)
    )


def write_dq(lake: Lake, day: dt.date, failing: tuple[str, ...] = ()) -> None:
    rows = [
        {
            "table": table,
            "check": check,
            "passed": check not in failing,
            "observed": '{"rows": 1200}',
            "sample": "[]",
            "description": f"the {check} check of {table}",
            "checked_at": dt.datetime.combine(day, dt.time(1), dt.UTC) + dt.timedelta(days=1),
            "day": day,
        }
        for table, check in (
            ("bronze.exposures", "ids_unique"),
            ("bronze.exposures", "volume_in_band"),
            ("bronze.metric_events", "values_finite"),
            ("silver.exposure_counts", "counts_consistent"),
        )
    ]
    lake.merge_arrow(OPS_DQ_RESULTS, pa.Table.from_pylist(rows, schema=OPS_DQ_RESULTS.schema))


QUARANTINE = {"bad_json": 5, "unknown_variant": 3, "ts_out_of_range": 2}


def write_quarantine(lake: Lake, day: dt.date) -> None:
    rows = []
    for reason, count in QUARANTINE.items():
        for i in range(count):
            rows.append(
                {
                    "source_file": f"exposures/date={day}/exposures+0+{reason}.jsonl",
                    "source_line": i + 1,
                    "topic": "exposures",
                    "reason": reason,
                    "detail": f"planted {reason}",
                    "raw": "{not json" * 20,
                    "raw_bytes": 180,
                    "arrival_date": day,
                }
            )
    lake.write_arrow(BRONZE_QUARANTINE, pa.Table.from_pylist(rows, schema=BRONZE_QUARANTINE.schema))


@contextlib.contextmanager
def _clock(t: dt.datetime):
    """The platform clock (ABP_NOW) at ``t``, as the demo sets it: audit rows are stamped with it."""
    before = os.environ.get("ABP_NOW")
    os.environ["ABP_NOW"] = t.isoformat()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ABP_NOW", None)
        else:
            os.environ["ABP_NOW"] = before


def build_demo(root: Path, seed: int = 7) -> Demo:
    """Everything the dashboard reads, under ``root/abp`` with a registry copy in ``root/registry``."""
    home = Paths((root / "abp").resolve())
    home.home.mkdir(parents=True, exist_ok=True)
    registry_root = copy_registry(root / "registry")
    registry = load_registry(registry_root)
    running = [e for e in registry.experiments.values() if e.status == "running"]
    first = min(e.start_date for e in running)
    days = tuple(first + dt.timedelta(days=i) for i in range(DAYS))
    lake = Lake(home)
    published_at = dt.datetime.combine(first, dt.time(), dt.UTC)
    with _clock(published_at):
        publish(home, registry_root, actor="demo", now=published_at)
    killed_at = dt.datetime.combine(days[2], dt.time(0, 30), dt.UTC)

    for day in days:
        kill_now = killed_at if day >= killed_at.date() else None
        replace = [{"day": day.isoformat()}]
        for spec, table in _day_tables(registry, day, kill_now, seed).items():
            lake.write_arrow(spec, table, replace=replace)
        write_exposures(lake, registry, day, killed_at)
        write_dq(lake, day)
        write_quarantine(lake, day)
        analysed_at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 30), dt.UTC)
        if day == days[1]:  # analysed at 00:30 on days[2]: the breach kills it then
            with _clock(killed_at):
                kill(
                    home,
                    KILLED,
                    reason=f"auto-kill: {KILLED}: guardrail page_load_ms is breached",
                    by="system",
                    registry_root=registry_root,
                    now=killed_at,
                )
        reconcile_day(lake, registry, day, now=analysed_at)
    return Demo(home, registry_root, days, killed_at)
