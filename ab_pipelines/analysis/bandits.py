"""A bandit's analysis day: its arms per allocation period, the period-weighted comparison, and
the Thompson-sampling weights to publish next (``gold.bandit_weights``).

No Spark: the Spark pass already grouped each bandit's units by the period in force at their
first exposure (segment rows ``bandit_period=v<version>`` of gold.sufficient_stats, see
dbt_like_sql/README.md "Bandit periods"). Per metric and arm, the per-period moments are what
:func:`ab_pipelines.stats.compare_by_period` and :func:`ab_pipelines.stats.thompson_weights`
take (GrowthBook's weighting by period: every arm's period means averaged with the same weights,
each period's share of the units of all arms). docs/analysis.md, "Bandits".
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis.decision import ALL_SEGMENT
from ab_pipelines.config.allocations import PERIOD_SEGMENT, Period, allocation_periods
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import GOLD_BANDIT_WEIGHTS
from ab_pipelines.stats import Moments
from ab_pipelines.stats.bandit import thompson_weights

__all__ = [
    "bandit_weight_rows",
    "day_periods",
    "is_period_segment",
    "period_labels",
    "period_moments",
]

_PREFIX = f"{PERIOD_SEGMENT}="


def day_periods(lake: Lake, exp: Experiment, day: dt.date) -> list[Period]:
    """The allocation periods of bandit ``exp`` that began by the end of ``day`` (a unit first
    exposed that day belongs to one of them); none for an experiment that is not a bandit."""
    if not exp.is_bandit:
        return []
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return allocation_periods(lake, exp, end)


def is_period_segment(segment: str) -> bool:
    """Whether a gold.sufficient_stats segment is a bandit's allocation period."""
    return segment.startswith(_PREFIX)


def period_labels(by_key: Mapping[tuple[str, str, str], dict]) -> list[str]:
    """The period segments present in rows keyed (metric, variant, segment), oldest first; rows
    without any (one period, or stats computed without the periods) give ``["all"]``: one
    period, the comparison then being the pooled one."""
    found = {s for (_, _, s) in by_key if is_period_segment(s)}
    if not found:
        return [ALL_SEGMENT]
    return sorted(found, key=lambda s: int(s[len(_PREFIX) + 1 :]))


def period_moments(
    by_key: Mapping[tuple[str, str, str], dict],
    metric: str,
    variants: Sequence[str],
    labels: Sequence[str],
) -> tuple[Moments, np.ndarray]:
    """Every arm's moments of ``metric`` per period, shape (arms, periods), and each period's
    units over all arms (the period weights); a missing row counts as no units.

    A period where some arm has fewer than 2 units (a short period, or an arm at the floor) has
    no variance to weigh: it is merged into the period before it (the first into the one after),
    so every period weighted has a mean and a variance in every arm; merging periods of different
    weights pools them, a small bias confined to those few units (docs/analysis.md, "Bandits").
    """

    def col(v: str, field: str) -> list[float]:
        return [float((by_key.get((metric, v, p)) or {}).get(field) or 0.0) for p in labels]

    fields = {f: np.array([col(v, c) for v in variants]) for f, c in _COLUMNS.items()}
    groups: list[list[int]] = []
    n = fields["n"]
    for j in range(len(labels)):
        sparse = n[:, j].min() < 2
        if groups and (sparse or n[:, groups[-1]].sum(axis=1).min() < 2):
            groups[-1].append(j)
        else:
            groups.append([j])
    merged = {f: np.stack([x[:, g].sum(axis=1) for g in groups], axis=1) for f, x in fields.items()}
    return Moments(**merged), merged["n"].sum(axis=0)


_COLUMNS = {"n": "n", "sum": "num_sum", "sum_sq": "num_sum_sq"}


def _seed(experiment_id: str, day: dt.date) -> int:
    """The Monte Carlo seed of a bandit's day: the same data gives the same weights."""
    digest = hashlib.sha256(f"{experiment_id}:{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _due(exp: Experiment, day: dt.date) -> bool:
    """Whether ``day`` is an update day: every ``update_days`` days of data since the start."""
    assert exp.bandit is not None
    return ((day - exp.start_date).days + 1) % exp.bandit.update_days == 0


def bandit_weight_rows(
    exp: Experiment,
    metric: Metric,
    day: dt.date,
    by_key: Mapping[tuple[str, str, str], dict],
    periods: Sequence[Period],
    ended: bool,
) -> pa.Table:
    """gold.bandit_weights rows of bandit ``exp`` on ``day``: per arm the posterior of ``metric``
    weighted by period, P(best), the weight serving during the day (the last period's) and the
    weight to publish next: Thompson sampling with the floor (:func:`thompson_weights`) on an
    update day once every arm has ``min_units_per_arm`` units, else the serving weight, with the
    reason. ``by_key``: the day's gold.sufficient_stats rows of ``exp`` keyed (metric, variant,
    segment); ``periods``: its allocation periods (the last one serves now)."""
    b = exp.bandit
    assert b is not None and periods
    variants = exp.variant_ids
    live = np.array(periods[-1].weights, dtype=np.float64)
    labels = period_labels(by_key)
    seed = _seed(exp.id, day)
    arms, units = period_moments(by_key, metric.id, variants, labels)
    if units.sum() > 0:
        w = thompson_weights(
            arms,
            by_period=True,
            period_share=units,
            higher_is_better=metric.higher_is_better,
            min_units=b.min_units_per_arm,
            floor=b.floor,
            current_weights=live,
            seed=seed,
        )
        n, mean, sd, best = w.n, w.posterior_mean, w.posterior_sd, w.best_probability
        computed = bool(w.updated)
        new = np.asarray(w.weights)
    else:  # no analysed unit yet
        n = np.zeros(len(variants))
        mean = sd = best = np.full(len(variants), np.nan)
        computed, new = False, live
    short = [v for v, k in zip(variants, n, strict=True) if k < b.min_units_per_arm]
    if ended:
        reason, updated = "ended: no new units to allocate", False
    elif not _due(exp, day):
        reason, updated = f"not an update day (every {b.update_days} days)", False
    elif short:
        reason = f"burn-in: {', '.join(short)} below {b.min_units_per_arm} units"
        updated = False
    elif not computed:
        reason, updated = "no posterior (an arm has fewer than 2 units in a period)", False
    else:
        reason, updated = "updated", True
    weights = _in_buckets(new) if updated else live
    rows = [
        {
            "experiment_id": exp.id,
            "metric": metric.id,
            "variant": v,
            "n": int(n[i]),
            "posterior_mean": _num(mean[i]),
            "posterior_sd": _num(sd[i]),
            "best_probability": _num(best[i]),
            "live_weight": float(live[i]),
            "weight": float(weights[i]),
            "updated": updated,
            "reason": reason,
            "periods": int(np.sum(units > 0)),
            "seed": seed,
            "registry_sha": None,
            "config_version": None,
            "day": day,
        }
        for i, v in enumerate(variants)
    ]
    return pa.Table.from_pylist(rows, schema=GOLD_BANDIT_WEIGHTS.schema)


def _in_buckets(w: np.ndarray) -> np.ndarray:
    """Weights in whole hash buckets (1/10,000, what the SDK's ranges can serve), summing to 1:
    largest remainders (each arm keeps at least its floor, which is a whole number of buckets
    when the floor is, e.g. 1%)."""
    from ab_pipelines.contracts.hashing import BUCKETS

    scaled = np.asarray(w, dtype=np.float64) * BUCKETS
    whole = np.floor(scaled + 1e-9)
    left = int(round(BUCKETS - whole.sum()))
    order = np.argsort(-(scaled - whole), kind="stable")
    whole[order[:left]] += 1
    return whole / BUCKETS


def _num(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
