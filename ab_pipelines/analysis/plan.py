"""``abp plan``: how many units, and how many days, an experiment on a metric needs.

Both inputs come from what the pipeline has already measured (``gold.sufficient_stats``):

- the metric's mean and per-unit variance: the metric's rows on the latest analysed day, pooled
  over every experiment and variant that reads it (segment "all"; a ratio's variance is that of the
  linearised ratio, Deng et al. 2018);
- traffic: the new analysed units per day of each experiment over the last week (the growth of its
  cumulative n), divided by the share of traffic it takes (allocation × layer range); the largest
  such figure is the eligible traffic of a new, untargeted experiment.

Power: two-sided fixed-horizon normal approximation (:func:`ab_pipelines.stats.sample_size`). With
sequential testing (the default) the always-valid bounds are wider, so treat the answer as a floor.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

import pyarrow.compute as pc

from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import GOLD_SUFFICIENT_STATS
from ab_pipelines.stats import days_needed, sample_size

__all__ = ["Plan", "PlanError", "metric_moments", "plan", "traffic_share"]

TRAFFIC_WINDOW_DAYS = 7


class PlanError(LookupError):
    """Not enough measured data to plan (unknown metric, nothing analysed yet)."""


@dataclass(frozen=True)
class Plan:
    metric: str
    mde: float
    alpha: float
    power: float
    variants: int
    allocation: float
    as_of: str
    mean: float
    variance: float
    units_observed: int
    units_per_arm: int
    units_total: int
    eligible_units_per_day: float | None
    days: int | None

    def as_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        days = "unknown (no traffic measured yet)" if self.days is None else f"{self.days}"
        traffic = (
            "n/a"
            if self.eligible_units_per_day is None
            else f"{self.eligible_units_per_day:,.0f} new eligible units/day"
        )
        return "\n".join(
            [
                f"plan for {self.metric}: detect a {self.mde:.2%} relative change "
                f"(alpha {self.alpha:g}, power {self.power:.0%}, {self.variants} variants, "
                f"allocation {self.allocation:g})",
                f"  metric as of {self.as_of}: mean {self.mean:.4g}, per-unit variance "
                f"{self.variance:.4g} (from {self.units_observed:,} analysed units)",
                f"  units needed: {self.units_per_arm:,} per arm, {self.units_total:,} in all",
                f"  traffic: {traffic}",
                f"  days needed: {days} (fixed horizon; sequential bounds need somewhat more)",
            ]
        )


def traffic_share(exp) -> float:
    """The share of all units an experiment can take: allocation, or its layer range's width."""
    if exp.layer_range is not None:
        return exp.layer_range[1] - exp.layer_range[0]
    return exp.allocation


def metric_moments(rows: list[dict]) -> tuple[float, float, int]:
    """(mean, per-unit variance, n) of gold.sufficient_stats rows pooled; a ratio linearised."""
    n = sum(r["n"] for r in rows)
    if n < 2:
        maturing = sum(r.get("maturing") or 0 for r in rows)
        if maturing:
            raise PlanError(
                f"fewer than two units count yet: {maturing} are still maturing (the metric's "
                "window has not ended for them; they count once it has)"
            )
        raise PlanError("fewer than two analysed units")
    s = {k: sum(r[k] for r in rows) for k in ("num_sum", "num_sum_sq", "den_sum", "den_sum_sq")}
    cross = sum(r["num_den_sum"] for r in rows)
    mu_num, mu_den = s["num_sum"] / n, s["den_sum"] / n
    if mu_den == 0:
        raise PlanError("the denominator is 0 for every analysed unit")
    ratio = mu_num / mu_den
    var_num = (s["num_sum_sq"] - s["num_sum"] ** 2 / n) / (n - 1)
    var_den = (s["den_sum_sq"] - s["den_sum"] ** 2 / n) / (n - 1)
    cov = (cross - s["num_sum"] * s["den_sum"] / n) / (n - 1)
    return ratio, (var_num - 2 * ratio * cov + ratio**2 * var_den) / mu_den**2, n


def _eligible_per_day(lake: Lake, registry: Registry, day: dt.date) -> float | None:
    """New eligible units per day: the best-measured experiment's growth over the last week."""
    since = day - dt.timedelta(days=TRAFFIC_WINDOW_DAYS)
    t = lake.read_arrow(
        GOLD_SUFFICIENT_STATS,
        filter=(pc.field("segment") == "all") & (pc.field("day") >= since),
        columns=["experiment_id", "metric", "variant", "n", "maturing", "day"],
    ).to_pylist()
    # units per (experiment, day): any one metric's analysed units summed over variants (all
    # metrics agree once a windowed metric's units still maturing are added back)
    units: dict[tuple[str, dt.date], dict[str, int]] = {}
    for r in t:
        units.setdefault((r["experiment_id"], r["day"]), {}).setdefault(r["metric"], 0)
        units[(r["experiment_id"], r["day"])][r["metric"]] += r["n"] + (r["maturing"] or 0)
    best = None
    for exp in registry.experiments.values():
        days = sorted(d for (e, d) in units if e == exp.id)
        if len(days) < 2 or traffic_share(exp) <= 0:
            continue
        first, last = days[0], days[-1]
        n0 = max(units[(exp.id, first)].values())
        n1 = max(units[(exp.id, last)].values())
        rate = (n1 - n0) / (last - first).days / traffic_share(exp)
        best = rate if best is None else max(best, rate)
    return best


def plan(
    lake: Lake,
    registry: Registry,
    metric: str,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    allocation: float = 1.0,
) -> Plan:
    """Units per arm and days needed to detect a relative change ``mde`` in ``metric``."""
    if metric not in registry.metrics:
        known = ", ".join(sorted(registry.metrics)) or "none"
        raise PlanError(f"no metric {metric!r} in the registry (known: {known})")
    if registry.metrics[metric].kind == "quantile":
        raise PlanError(
            f"{metric} is a quantile metric: abp plan sizes means, proportions and ratios only "
            "(a quantile's variance depends on the density at the quantile; see docs/analysis.md)"
        )
    if not 0 < mde < 10:
        raise PlanError(f"--mde {mde} must be a relative change above 0, e.g. 0.02 for 2%")
    if not 0 < allocation <= 1 or variants < 2:
        raise PlanError("--allocation must lie in (0, 1] and --variants be at least 2")
    latest = lake.read_arrow(
        GOLD_SUFFICIENT_STATS,
        filter=(pc.field("metric") == metric) & (pc.field("segment") == "all"),
    ).to_pylist()
    if not latest:
        raise PlanError(
            f"{metric} has no analysed data yet: plan needs a running experiment that reads it "
            "(its per-unit variance is measured, not guessed)"
        )
    day = max(r["day"] for r in latest)
    mean, variance, n = metric_moments([r for r in latest if r["day"] == day])
    per_arm = int(sample_size(mean, variance, mde, alpha=alpha, power=power))
    if per_arm < 0:
        raise PlanError(f"{metric} has mean 0 on {day}: a relative change cannot be detected")
    eligible = _eligible_per_day(lake, registry, day)
    days = None
    if eligible is not None and eligible > 0:
        days = int(days_needed(eligible * allocation / variants, per_arm))
    return Plan(
        metric=metric,
        mde=mde,
        alpha=alpha,
        power=power,
        variants=variants,
        allocation=allocation,
        as_of=day.isoformat(),
        mean=mean,
        variance=variance,
        units_observed=n,
        units_per_arm=per_arm,
        units_total=per_arm * variants,
        eligible_units_per_day=None
        if eligible is None or not math.isfinite(eligible)
        else eligible,
        days=days,
    )
