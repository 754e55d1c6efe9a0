"""A bandit's allocations: the weights each config version served, and the weights to serve next.

Two tables meet here (docs/analysis.md, "Bandits"):

- ``gold.bandit_weights`` (written by the analysis, :mod:`ab_pipelines.analysis.bandits`): per
  analysis day and arm, the Thompson-sampling weight to publish next. :func:`weights_to_serve`
  reads the newest day that updated them, per bandit; the publisher compiles those weights instead of the
  YAML's (the YAML's are the first ones served), so a bandit's update goes out through the normal
  signed, versioned and audited path, with its layer range, salt and allocation unchanged.
- ``ops.bandit_allocations`` (written by the publisher, :func:`record_allocations`): every config
  version that changed a bandit's weights, with when it was published. These are the allocation
  periods: a unit belongs to the period in force at its first exposure, and the analysis weights
  the periods by their share of units (:func:`allocation_periods`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.config.models import Experiment
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import GOLD_BANDIT_WEIGHTS, OPS_BANDIT_ALLOCATIONS

__all__ = [
    "PERIOD_SEGMENT",
    "Period",
    "allocation_periods",
    "record_allocations",
    "weights_to_serve",
]

#: The pseudo segment attribute of a bandit's allocation periods in gold.sufficient_stats: rows
#: "bandit_period=v<config version>" (v0: the YAML's weights before any publish was recorded).
PERIOD_SEGMENT = "bandit_period"


@dataclass(frozen=True)
class Period:
    """One allocation period of a bandit: the weights served from ``start`` (None: since the
    experiment started) until the next period's start."""

    version: int
    start: dt.datetime | None
    weights: tuple[float, ...]

    @property
    def label(self) -> str:
        """Its segment label in gold.sufficient_stats, e.g. ``bandit_period=v3``."""
        return f"{PERIOD_SEGMENT}=v{self.version}"


def allocation_periods(lake: Lake, exp: Experiment, until: dt.datetime) -> list[Period]:
    """The allocation periods of bandit ``exp`` that began before ``until``, oldest first.

    From ops.bandit_allocations (the versions that changed its weights); a version whose variants
    are not the experiment's is skipped. The first period always reaches back to the start (a
    unit exposed before the first recorded publish was served the YAML's weights, which is what
    the first recorded version serves too unless a bandit update came first: then a period v0 of
    the YAML's weights comes first). No recorded version: one period v0 of the YAML's weights.
    """
    yaml = tuple(v.weight for v in exp.variants)
    rows = lake.read_arrow(
        OPS_BANDIT_ALLOCATIONS, filter=pc.field("experiment_id") == exp.id
    ).to_pylist()
    rows = [
        r
        for r in sorted(rows, key=lambda r: r["config_version"])
        if r["published_at"] < until and list(r["variants"]) == exp.variant_ids
    ]
    periods: list[Period] = []
    for r in rows:
        w = tuple(float(x) for x in r["weights"])
        if periods and periods[-1].weights == w:
            continue  # the same weights again: one period
        periods.append(Period(int(r["config_version"]), r["published_at"], w))
    if not periods or periods[0].weights != yaml:
        periods.insert(0, Period(0, None, yaml))
    return [
        Period(p.version, None if i == 0 else p.start, p.weights) for i, p in enumerate(periods)
    ]


def weights_to_serve(lake: Lake, bandits: Mapping[str, Experiment]) -> dict[str, list[float]]:
    """experiment id -> the weights of its newest gold.bandit_weights day that updated them (arms
    in the YAML's order); a bandit without such rows, or whose rows do not name exactly its arms,
    is left out (it serves the YAML's weights). Days that did not update (burn-in, not an update
    day, ended) change nothing: the weights last computed keep serving."""
    if not bandits:
        return {}
    table = lake.read_arrow(
        GOLD_BANDIT_WEIGHTS,
        filter=pc.field("experiment_id").isin(list(bandits)) & pc.field("updated"),
        columns=["experiment_id", "variant", "weight", "day"],
    )
    out: dict[str, list[float]] = {}
    for exp_id, exp in bandits.items():
        rows = [r for r in table.to_pylist() if r["experiment_id"] == exp_id]
        if not rows:
            continue
        last = max(r["day"] for r in rows)
        by_arm = {r["variant"]: r["weight"] for r in rows if r["day"] == last}
        if set(by_arm) != set(exp.variant_ids) or any(w is None for w in by_arm.values()):
            continue
        out[exp_id] = [float(by_arm[v]) for v in exp.variant_ids]
    return out


def record_allocations(
    lake: Lake,
    served: Mapping[str, tuple[list[str], list[float], str]],
    version: int,
    now: dt.datetime,
) -> list[str]:
    """Append a row to ops.bandit_allocations for every bandit whose served weights differ from
    its last recorded ones (or that has none); ``served``: id -> (variants, weights, source).
    Returns the ids recorded."""
    if not served:
        return []
    last: dict[str, tuple[list[str], list[float]]] = {}
    for r in sorted(
        lake.read_arrow(OPS_BANDIT_ALLOCATIONS).to_pylist(), key=lambda r: r["config_version"]
    ):
        last[r["experiment_id"]] = (list(r["variants"]), [float(w) for w in r["weights"]])
    rows = [
        {
            "experiment_id": exp_id,
            "config_version": version,
            "published_at": now,
            "variants": list(variants),
            "weights": [float(w) for w in weights],
            "source": source,
        }
        for exp_id, (variants, weights, source) in sorted(served.items())
        if last.get(exp_id) != (list(variants), [float(w) for w in weights])
    ]
    if rows:
        table = pa.Table.from_pylist(rows, schema=OPS_BANDIT_ALLOCATIONS.schema)
        lake.write_arrow(OPS_BANDIT_ALLOCATIONS, table)
    return [r["experiment_id"] for r in rows]
