"""From sufficient statistics to what people read: results, SRM, health checks and the decision.

Pure numpy on the rows of ``gold.sufficient_stats`` (no Spark): the Spark step hands over the
sums, and everything here is the statistics library (:mod:`ab_pipelines.stats`) applied per
experiment and day, vectorized over (metric, variant, segment). The rules (CONTRACTS sections 4
and 5; choices the contract leaves open are documented in docs/analysis.md):

- Every metric of an experiment gets, per non-baseline variant and segment: the fixed-horizon Welch
  estimates (raw and, where pre-period data exists, CUPED) and the always-valid estimates of the
  confidence sequence (N* = 5000), computed on the CUPED estimate where CUPED applies.
- A quantile metric gets the fixed-horizon difference of quantiles only
  (:func:`~ab_pipelines.stats.compare_quantiles` on the ``q_*`` columns: GrowthBook's method, a
  clustered variance for events nested in units): no CUPED, no always-valid estimates (those
  columns are null), a Bayesian posterior on that difference (as gbstats takes a quantile
  statistic), and its ``mean_*`` are the arms' sample quantiles.
- Which estimate a decision reads, the family and its adjustment, the guardrail check and the
  decision itself are :mod:`ab_pipelines.analysis.decision`'s: this module computes the numbers
  and asks it.
- Segment rows are exploratory: computed and shown, never adjusted, never decide.
- A bandit's rows are weighted by allocation period (GrowthBook's weighting; its period rows are
  read for that and not shown): :func:`_bandit_cells`, docs/analysis.md "Bandits".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis import decision
from ab_pipelines.analysis.bandits import period_labels, period_moments
from ab_pipelines.analysis.decision import ALL_SEGMENT, DECISIONS, MetricVerdict, Srm, Standing
from ab_pipelines.analysis.state import has_ended
from ab_pipelines.config.allocations import Period
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_SRM,
    QUANTILE_FIELDS,
)
from ab_pipelines.stats import (
    DEFAULT_SEQUENTIAL_TUNING,
    Moments,
    Prior,
    QuantileMoments,
    RatioMoments,
    RegressionMoments,
    bayesian_decision,
    compare,
    compare_adjusted,
    compare_by_period,
    compare_poststratified,
    compare_quantiles,
    e_value,
    n_star_for,
    posterior,
    srm_test,
)
from ab_pipelines.stats.quantile import CLUSTER_FIELDS

__all__ = [
    "ALL_SEGMENT",
    "CROSSOVER_SHARE_FLAG",
    "DECISIONS",
    "IMBALANCE_ALPHA",
    "decide",
    "experiment_results",
    "gold_moments",
    "health_rows",
    "srm_rows",
]

#: crossovers above this share of the exposed units are flagged in gold.health.
CROSSOVER_SHARE_FLAG = 0.01
#: a covariate whose arms differ before exposure at p below this is flagged (as strict as SRM).
IMBALANCE_ALPHA = 0.001


def _roles(exp: Experiment) -> dict[str, str]:
    """metric id -> its role; a metric listed twice keeps its first role (primary first)."""
    roles: dict[str, str] = {}
    for role, ids in (
        ("primary", exp.metrics.primary),
        ("secondary", exp.metrics.secondary),
        ("guardrail", [g.metric for g in exp.metrics.guardrails]),
    ):
        for mid in ids:
            roles.setdefault(mid, role)
    return roles


def ended(exp: Experiment, day: dt.date, killed_at: dt.datetime | None) -> bool:
    """Whether the experiment no longer takes new units on ``day``: stopped, killed, or past its
    end (the experiment state's rule, :func:`ab_pipelines.analysis.state.has_ended`)."""
    return has_ended(exp.status, exp.end_date, day, killed_at)


# ---- SRM ---------------------------------------------------------------------------------


def srm_rows(
    exp: Experiment,
    day: dt.date,
    units: Mapping[str, Mapping[str, int]],
    periods: Sequence[Period] = (),
) -> pa.Table:
    """gold.srm rows: per segment and variant, analysed units against the configured weights.

    ``units`` is segment -> variant -> analysed units (what the Spark step counted). Segments other
    than "all" are tested too (exploratory: a split that breaks only on one platform shows there).

    A bandit (``periods``, its allocation periods): each period's units against the weights it
    served, and "all" against their mixture, Σ_p (N_p/N)·w_p (N_p the period's units): the split
    a working assignment gives when the weights change between periods.
    """
    weights = [v.weight for v in exp.variants]
    served = {p.label: list(p.weights) for p in periods}
    if served:
        total = {s: sum(units[s].get(v, 0) for v in exp.variant_ids) for s in served if s in units}
        n = sum(total.values())
        if n > 0:
            weights = [sum(total[s] / n * served[s][i] for s in total) for i in range(len(weights))]
    rows = []
    for segment in sorted(units, key=lambda s: (s != ALL_SEGMENT, s)):
        counts = [int(units[segment].get(v, 0)) for v in exp.variant_ids]
        expected_split = served.get(segment, weights)
        r = srm_test(counts, expected_split)
        for i, vid in enumerate(exp.variant_ids):
            rows.append(
                dict(
                    experiment_id=exp.id,
                    segment=segment,
                    variant=vid,
                    units=counts[i],
                    weight=expected_split[i],
                    expected=float(r.expected[i]),
                    statistic=_num(r.statistic),
                    p_value=_num(r.p_value),
                    flagged=bool(r.flagged),
                    day=day,
                )
            )
    return pa.Table.from_pylist(rows, schema=GOLD_SRM.schema)


def srm_flagged(srm: pa.Table) -> bool:
    """Whether segment "all" of an experiment's gold.srm rows is flagged."""
    return Srm.from_gold([r for r in srm.to_pylist() if r["segment"] == ALL_SEGMENT]).flagged


# ---- moments from gold rows --------------------------------------------------------------

_RATIO_FIELDS = tuple(f for f in RatioMoments.__dataclass_fields__)
_MOMENT_FIELDS = ("n", "sum", "sum_sq")


def _column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([r[name] for r in rows], dtype=np.float64)


def gold_moments(rows: list[dict], ratio: bool) -> Moments | RatioMoments:
    """The arms of ``rows`` (gold.sufficient_stats rows) as one vectorized moments object."""
    if ratio:
        return RatioMoments(**{f: _column(rows, f) for f in _RATIO_FIELDS})
    # A mean or proportion is stored with den = 1: its Y is num, its covariate X is pre_num.
    return Moments(
        n=_column(rows, "n"),
        sum=_column(rows, "num_sum"),
        sum_sq=_column(rows, "num_sum_sq"),
        pre_sum=_column(rows, "pre_num_sum"),
        pre_sum_sq=_column(rows, "pre_num_sum_sq"),
        sum_cross=_column(rows, "num_pre_num_sum"),
    )


# The per-unit sums of an event-level quantile (QuantileMoments' clustered fields), by column.
_CLUSTER_COLUMNS = {c: f for c, f in QUANTILE_FIELDS.items() if f in CLUSTER_FIELDS}


def _quantile_moments(rows: list[dict], q: float, clustered: bool) -> QuantileMoments:
    """The arms of ``rows`` (gold.sufficient_stats rows of a quantile metric) as one vectorized
    QuantileMoments. A missing value (an arm without values, or no row) reads as no values: the
    quantiles NaN, the counts and sums 0."""

    def col(name: str, missing: float) -> np.ndarray:
        return np.array([missing if r.get(name) is None else r[name] for r in rows], np.float64)

    n, n_star = col("q_n", 0.0), col("q_n_star", np.nan)
    fields: dict[str, Any] = {
        "q": q,
        "n": n,
        "n_star": np.where(np.isnan(n_star), n_star_for(n), n_star),
        "quantile": col("q_value", np.nan),
        "lower": col("q_lower", np.nan),
        "upper": col("q_upper", np.nan),
    }
    if clustered:
        fields |= {f: col(c, 0.0) for c, f in _CLUSTER_COLUMNS.items()}
    return QuantileMoments(**fields)


def _num(x: Any) -> float | None:
    """A float, or None for NaN/inf (results never hold NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


# ---- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    """One comparison to make: a metric, a non-baseline variant, a segment and both arms' rows."""

    metric: Metric
    role: str
    variant: str
    segment: str
    base: dict
    arm: dict


def _estimates(prefix: str, c, i: int) -> dict[str, float | None]:
    return {
        f"{prefix}_effect": _num(c.effect[i]),
        f"{prefix}_ci_low": _num(c.ci_low[i]),
        f"{prefix}_ci_high": _num(c.ci_high[i]),
        f"{prefix}_p_value": _num(c.p_value[i]),
    }


def _compare_cells(cells: list[_Cell], exp: Experiment) -> list[dict]:
    """Raw, CUPED and sequential estimates of every cell, one vectorized call per kind and mode."""
    alpha = exp.analysis.alpha
    lookback = exp.analysis.cuped_lookback_days
    out: list[dict] = [{} for _ in cells]
    _compare_quantile_cells(cells, exp, out)
    for ratio in (False, True):
        idx = [
            i
            for i, c in enumerate(cells)
            if c.metric.kind != "quantile" and (c.metric.kind == "ratio") == ratio
        ]
        if not idx:
            continue
        a = gold_moments([cells[i].base for i in idx], ratio)
        b = gold_moments([cells[i].arm for i in idx], ratio)
        raw = {rel: compare(a, b, relative=rel, alpha=alpha) for rel in (False, True)}
        cup = {rel: compare(a, b, relative=rel, alpha=alpha, cuped=True) for rel in (False, True)}
        seq_raw = {
            rel: compare(
                a, b, relative=rel, alpha=alpha, sequential_tuning=DEFAULT_SEQUENTIAL_TUNING
            )
            for rel in (False, True)
        }
        seq_cup = {
            rel: compare(
                a,
                b,
                relative=rel,
                alpha=alpha,
                cuped=True,
                sequential_tuning=DEFAULT_SEQUENTIAL_TUNING,
            )
            for rel in (False, True)
        }
        for j, i in enumerate(idx):
            c = cells[i]
            has_pre = decision.cuped_applies(
                lookback, c.base["pre_num_sum_sq"], c.arm["pre_num_sum_sq"], cup[True].effect[j]
            )
            seq = seq_cup if has_pre else seq_raw
            row = {
                "n_baseline": int(c.base["n"]),
                "n_variant": int(c.arm["n"]),
                "maturing_baseline": c.base.get("maturing"),
                "maturing_variant": c.arm.get("maturing"),
                "mean_baseline": _num(raw[False].mean_a[j]),
                "mean_variant": _num(raw[False].mean_b[j]),
                **_estimates("abs", raw[False], j),
                **_estimates("rel", raw[True], j),
                **_estimates("seq_abs", seq[False], j),
                **_estimates("seq_rel", seq[True], j),
                "e_value": _e_value(seq[True], j, alpha),
            }
            if has_pre:
                row.update(
                    cuped_theta=_num(cup[True].theta[j]),
                    cuped_variance_reduction=_num(cup[True].variance_reduction[j]),
                    **_estimates("cuped_abs", cup[False], j),
                    **_estimates("cuped_rel", cup[True], j),
                )
            out[i] = row
    return out


def _e_value(seq, j: int, alpha: float) -> float | None:
    """The e-value of comparison ``j`` of a confidence-sequence comparison. An overflowing one (an
    effect too large to miss) is stored as 1e300, not inf, which the table's readers would take
    for "not computed"."""
    e = e_value(seq.effect[j], seq.se[j], seq.n_a[j] + seq.n_b[j], alpha, DEFAULT_SEQUENTIAL_TUNING)
    return _num(np.minimum(e, 1e300))


def _quantile_of(c: _Cell) -> tuple[float, bool]:
    """(ν, event level) of a quantile cell as computed (the stored q_level, and the per-unit sums
    present or not), else as the metric says now (no rows: nothing to disagree with)."""
    for r in (c.base, c.arm):
        if r.get("q_level") is not None:
            return float(r["q_level"]), r.get("q_n_units") is not None
    assert c.metric.quantile is not None
    return c.metric.quantile, c.metric.level == "event"


def _compare_quantile_cells(cells: list[_Cell], exp: Experiment, out: list[dict]) -> None:
    """The fixed-horizon difference of quantiles of every quantile cell, absolute and relative,
    into ``out``; one vectorized call per (ν, level) and mode. Nothing sequential: fixed horizon
    only (docs/analysis.md, "Quantile metrics")."""
    groups: dict[tuple[float, bool], list[int]] = {}
    for i, c in enumerate(cells):
        if c.metric.kind == "quantile":
            groups.setdefault(_quantile_of(c), []).append(i)
    for (q, clustered), idx in groups.items():
        a = _quantile_moments([cells[i].base for i in idx], q, clustered)
        b = _quantile_moments([cells[i].arm for i in idx], q, clustered)
        r = {
            rel: compare_quantiles(a, b, relative=rel, alpha=exp.analysis.alpha)
            for rel in (False, True)
        }
        for j, i in enumerate(idx):
            c = cells[i]
            out[i] = {
                "n_baseline": int(r[False].n_a[j]),
                "n_variant": int(r[False].n_b[j]),
                "maturing_baseline": c.base.get("maturing"),
                "maturing_variant": c.arm.get("maturing"),
                "mean_baseline": _num(r[False].mean_a[j]),
                "mean_variant": _num(r[False].mean_b[j]),
                "metric_quantile": q,
                "metric_level": "event" if clustered else "unit",
                **_estimates("abs", r[False], j),
                **_estimates("rel", r[True], j),
            }


def _prior(metric: Metric) -> Prior | None:
    """The metric's informative prior on the relative lift, or None (GrowthBook's flat prior)."""
    return None if metric.prior is None else Prior.normal(metric.prior.mean, metric.prior.sd)


def _bayes_cells(cells: list[_Cell], exp: Experiment, cuped: list[bool]) -> list[dict]:
    """The Bayesian engine's posterior of every cell's relative lift (CUPED where ``cuped[i]``;
    a quantile cell: of its difference of quantiles, as gbstats' EffectBayesianABTest takes a
    QuantileStatistic) and its call under the experiment's thresholds; one vectorized call per
    group of cells that share a kind, a prior and a direction."""
    out: list[dict] = [{} for _ in cells]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cells):
        # a quantile metric: its (ν, level) instead of the moments' kind and CUPED
        kind = _quantile_of(c) if c.metric.kind == "quantile" else c.metric.kind == "ratio"
        key = (kind, c.metric.prior, c.metric.higher_is_better, cuped[i])
        groups.setdefault(key, []).append(i)
    for (kind, _, _, with_cuped), idx in groups.items():
        if isinstance(kind, tuple):  # quantile: the posterior of the difference of quantiles
            q, clustered = kind
            a = _quantile_moments([cells[i].base for i in idx], q, clustered)
            b = _quantile_moments([cells[i].arm for i in idx], q, clustered)
            comparison = compare_quantiles(a, b, relative=True, alpha=exp.analysis.alpha)
        else:
            a = gold_moments([cells[i].base for i in idx], kind)
            b = gold_moments([cells[i].arm for i in idx], kind)
            comparison = compare(a, b, relative=True, alpha=exp.analysis.alpha, cuped=with_cuped)
        _posterior_into(out, idx, comparison, cells[idx[0]].metric, exp)
    return out


def _posterior_into(
    out: list[dict], idx: list[int], comparison, metric: Metric, exp: Experiment
) -> None:
    """The ``bayes_*`` columns of cells ``idx`` (one vectorized ``comparison`` of their relative
    lifts, metrics sharing a prior and a direction) into ``out``."""
    r = posterior(
        comparison,
        prior=_prior(metric),
        alpha=exp.analysis.alpha,
        higher_is_better=metric.higher_is_better,
    )
    calls = np.atleast_1d(
        bayesian_decision(r, exp.analysis.chance_to_win_threshold, exp.analysis.risk_threshold)
    )
    fields = np.broadcast_arrays(
        *(np.atleast_1d(x) for x in (r.effect, r.ci_low, r.ci_high, r.chance_to_win)),
        np.atleast_1d(r.risk_control),
        np.atleast_1d(r.risk_treatment),
    )
    for j, i in enumerate(idx):
        effect, low, high, win, risk_c, risk_v = (float(f[j]) for f in fields)
        out[i] = {
            "bayes_effect": _num(effect),
            "bayes_ci_low": _num(low),
            "bayes_ci_high": _num(high),
            "bayes_chance_to_win": _num(win),
            "bayes_risk_control": _num(risk_c),
            "bayes_risk_variant": _num(risk_v),
            "bayes_call": str(calls[j]),
        }


def _bandit_cells(
    cells: list[_Cell], exp: Experiment, by_key: Mapping[tuple, dict]
) -> tuple[list[dict], list[dict]]:
    """A bandit's estimates and posteriors (docs/analysis.md, "Bandits"): every cell (segment
    "all", a mean or proportion metric) compared with GrowthBook's weighting by period
    (:func:`~ab_pipelines.stats.compare_by_period` on the ``bandit_period=`` rows, the periods
    weighted by their units over all arms): fixed horizon, the confidence sequence on the same
    estimate (``seq_*``, e-value), and the Bayesian posterior of the relative lift. No CUPED.
    ``mean_*`` are the period-weighted means; ``n_*`` the arms' units."""
    for c in cells:
        if c.metric.kind not in ("mean", "proportion"):  # the registry's validation refuses it
            raise ValueError(
                f"bandit {exp.id}: metric {c.metric.id} is a {c.metric.kind}; a bandit's "
                "metrics are weighted by period, which needs a mean or a proportion"
            )
    labels = period_labels(by_key)
    est: list[dict] = [{} for _ in cells]
    post: list[dict] = [{} for _ in cells]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cells):
        groups.setdefault((c.metric.prior, c.metric.higher_is_better), []).append(i)
    alpha = exp.analysis.alpha
    for idx in groups.values():
        # every arm's periods (merged alike), and each period's units over ALL arms (GrowthBook's
        # N_p), not only the two compared; the merged periods of different metrics can differ
        parts = [period_moments(by_key, cells[i].metric.id, exp.variant_ids, labels) for i in idx]
        arms = [exp.variant_ids.index(cells[i].variant) for i in idx]
        a = _stacked([m for m, _ in parts], [0] * len(idx))
        b = _stacked([m for m, _ in parts], arms)
        share = _stacked_rows([u for _, u in parts], a.n.shape[1])
        fixed = {rel: compare_by_period(a, b, share, rel, alpha) for rel in (False, True)}
        seq = {
            rel: compare_by_period(a, b, share, rel, alpha, DEFAULT_SEQUENTIAL_TUNING)
            for rel in (False, True)
        }
        for j, i in enumerate(idx):
            c = cells[i]
            est[i] = {
                "n_baseline": int(fixed[False].n_a[j]),
                "n_variant": int(fixed[False].n_b[j]),
                "maturing_baseline": c.base.get("maturing"),
                "maturing_variant": c.arm.get("maturing"),
                "mean_baseline": _num(fixed[False].adjusted_mean_a[j]),
                "mean_variant": _num(fixed[False].adjusted_mean_b[j]),
                **_estimates("abs", fixed[False], j),
                **_estimates("rel", fixed[True], j),
                **_estimates("seq_abs", seq[False], j),
                **_estimates("seq_rel", seq[True], j),
                "e_value": _e_value(seq[True], j, alpha),
            }
        _posterior_into(post, idx, fixed[True], cells[idx[0]].metric, exp)
    return est, post


def _stacked_rows(rows: list[np.ndarray], width: int) -> np.ndarray:
    """1-d arrays as the rows of one array, each padded with zeros to ``width`` (an absent period:
    no units, weight 0)."""
    return np.stack([np.pad(r, (0, width - len(r))) for r in rows])


def _stacked(moments: list[Moments], arms: list[int]) -> Moments:
    """Arm ``arms[i]`` of ``moments[i]`` (arms x periods each) as one Moments, comparisons x
    periods, padded to the most periods."""
    width = max(m.n.shape[1] for m in moments)
    return Moments(
        *(
            _stacked_rows([getattr(m, f)[k] for m, k in zip(moments, arms, strict=True)], width)
            for f in _MOMENT_FIELDS
        )
    )


def _adjusted_cells(cells: list[_Cell], exp: Experiment, regression: pa.Table | None) -> list[dict]:
    """Regression adjustment on several covariates (report only) of every segment-"all" cell whose
    arms have gold.regression_stats rows: :func:`~ab_pipelines.stats.compare_adjusted`, fixed
    horizon, absolute and relative, the guard on (``adj_covariates``: those it kept, θ != 0)."""
    out: list[dict] = [{} for _ in cells]
    if regression is None or regression.num_rows == 0:
        return out
    rows = {
        (r["metric"], r["variant"], r["segment"]): r
        for r in regression.to_pylist()
        if r["experiment_id"] == exp.id
    }
    for i, c in enumerate(cells):
        base = rows.get((c.metric.id, exp.baseline, c.segment))
        arm = rows.get((c.metric.id, c.variant, c.segment))
        if base is None or arm is None or base["covariates"] != arm["covariates"]:
            continue
        a, b = _regression_moments(base), _regression_moments(arm)
        adj = {
            rel: compare_adjusted(a, b, relative=rel, alpha=exp.analysis.alpha)
            for rel in (False, True)
        }
        if _num(adj[True].effect[0]) is None and _num(adj[False].effect[0]) is None:
            continue  # nothing computable (e.g. no unit counts yet): the columns stay null
        theta = np.asarray(adj[True].theta).reshape(-1)
        out[i] = {
            **_estimates("adj_abs", adj[False], 0),
            **_estimates("adj_rel", adj[True], 0),
            "adj_variance_reduction": _num(adj[True].variance_reduction[0]),
            "adj_covariates": [
                name
                for name, t in zip(base["covariates"], theta, strict=True)
                if np.isfinite(t) and t != 0.0
            ],
        }
    return out


def _poststratified_cells(
    cells: list[_Cell], exp: Experiment, by_key: Mapping[tuple, dict], estimates: list[dict]
) -> list[dict]:
    """GrowthBook's post-stratification of every segment-"all" cell of a mean or proportion
    metric on ``analysis.poststratify``: :func:`~ab_pipelines.stats.compare_poststratified` on
    the segment rows of that attribute (its levels partition the units), CUPED within each level
    where the cell's CUPED applies; levels with fewer than 2 units in an arm are left out. Report
    only (the ``ps_*`` columns); nothing else reads them."""
    out: list[dict] = [{} for _ in cells]
    attr = exp.analysis.poststratify
    if attr is None:
        return out
    levels = sorted({s for (_, _, s) in by_key if s.startswith(f"{attr}=")})
    for i, c in enumerate(cells):
        if c.segment != ALL_SEGMENT or c.metric.kind not in ("mean", "proportion"):
            continue
        pairs = [
            (by_key[(c.metric.id, exp.baseline, s)], by_key[(c.metric.id, c.variant, s)])
            for s in levels
            if (c.metric.id, exp.baseline, s) in by_key and (c.metric.id, c.variant, s) in by_key
        ]
        pairs = [(a, b) for a, b in pairs if a["n"] >= 2 and b["n"] >= 2]
        if len(pairs) < 2:
            continue
        a = gold_moments([p[0] for p in pairs], ratio=False)
        b = gold_moments([p[1] for p in pairs], ratio=False)
        cuped = estimates[i].get("cuped_theta") is not None
        r = compare_poststratified(a, b, relative=True, alpha=exp.analysis.alpha, cuped=cuped)
        fields = ("effect", "ci_low", "ci_high", "p_value")
        out[i] = {"ps_attribute": attr} | {f"ps_rel_{f}": _num(getattr(r, f)) for f in fields}
    return out


def _regression_moments(row: Mapping[str, Any]) -> RegressionMoments:
    """One gold.regression_stats row as RegressionMoments of one comparison (leading axis 1)."""
    p = len(row["sums"])
    return RegressionMoments(
        n=np.array([row["n"]], dtype=np.float64),
        sums=np.asarray(row["sums"], dtype=np.float64).reshape(1, p),
        cross=np.asarray(row["cross"], dtype=np.float64).reshape(1, p, p),
        responses=int(row["responses"]),
    )


def decide(exp: Experiment, rows: list[dict], srm_is_flagged: bool, has_ended: bool) -> str:
    """:func:`ab_pipelines.analysis.decision.decide` on result rows (``_better`` set, any segment)."""
    standings = [
        Standing(
            metric=r["metric"],
            role=r["role"],
            variant=r["variant"],
            significant=bool(r["significant"]),
            better=r["_better"],
            breached=bool(r["guardrail_breached"]),
        )
        for r in rows
        if r["segment"] == ALL_SEGMENT
    ]
    return decision.decide(exp, standings, srm_is_flagged, has_ended)


def experiment_results(
    exp: Experiment,
    metrics: Mapping[str, Metric],
    day: dt.date,
    stats: pa.Table,
    srm_is_flagged: bool,
    killed_at: dt.datetime | None = None,
    regression: pa.Table | None = None,
) -> pa.Table:
    """gold.experiment_results rows of one experiment on ``day`` (every segment), with its decision.

    ``stats`` holds the experiment's gold.sufficient_stats rows of that day. A (metric, variant,
    segment) whose arm rows are missing counts as n = 0 (every estimate null). ``regression``:
    its gold.regression_stats rows of that day, for the ``adj_*`` columns (report only: nothing
    the decision reads); None or no rows leaves them null.
    """
    by_key = {(r["metric"], r["variant"], r["segment"]): r for r in stats.to_pylist()}
    segments = sorted({r["segment"] for r in by_key.values()} | {ALL_SEGMENT})
    segments.sort(key=lambda s: (s != ALL_SEGMENT, s))
    if exp.is_bandit:  # its period rows are inputs of the weighting, not a breakdown
        segments = [ALL_SEGMENT]
    roles = _roles(exp)
    margins = {g.metric: g.max_relative_change for g in exp.metrics.guardrails}
    base_id = exp.baseline

    def arm(mid: str, vid: str, seg: str) -> dict:
        empty = {f: 0.0 for f in _RATIO_FIELDS} | {"n": 0}
        return by_key.get((mid, vid, seg), empty)

    cells = [
        _Cell(metrics[mid], role, vid, seg, arm(mid, base_id, seg), arm(mid, vid, seg))
        for seg in segments
        for mid, role in roles.items()
        for vid in exp.variant_ids[1:]
        if seg == ALL_SEGMENT or (mid, base_id, seg) in by_key or (mid, vid, seg) in by_key
    ]
    if exp.is_bandit:
        estimates, bayes = _bandit_cells(cells, exp, by_key)
    else:
        estimates = _compare_cells(cells, exp)
        bayes = _bayes_cells(cells, exp, [est.get("cuped_theta") is not None for est in estimates])
    adjusted = _adjusted_cells(cells, exp, regression)
    stratified = _poststratified_cells(cells, exp, by_key, estimates)
    rows = []
    for c, est, post, adj, ps in zip(cells, estimates, bayes, adjusted, stratified, strict=True):
        row = {name: None for name in GOLD_EXPERIMENT_RESULTS.schema.names}
        row.update(est)
        row.update(post)
        row.update(adj)
        row.update(ps)
        row.update(
            experiment_id=exp.id,
            metric=c.metric.id,
            role=c.role,
            variant=c.variant,
            baseline=base_id,
            segment=c.segment,
            exploratory=c.segment != ALL_SEGMENT,
            day=day,
            metric_kind=c.metric.kind,
        )
        # Read every day: always-valid, or a quantile metric's fixed-horizon estimate.
        watched = MetricVerdict.from_gold(row).monitoring_relative
        row["_better"] = decision.better(
            decision.engine_effect(exp, watched.effect, post.get("bayes_effect")),
            c.metric.higher_is_better,
        )
        if c.metric.id in margins:
            g = decision.guardrail_check(
                margins[c.metric.id], watched.ci_low, watched.ci_high, c.metric.higher_is_better
            )
            row.update(
                guardrail_margin=g.margin, guardrail_bound=g.bound, guardrail_breached=g.breached
            )
        rows.append(row)

    family = [r for r in rows if decision.in_family(r["role"], r["segment"])]
    if family:
        sequential = exp.analysis.sequential
        p = [MetricVerdict.from_gold(r).decision_relative(sequential).p_value for r in family]
        for r, q in zip(family, decision.adjust(p, exp.analysis.correction), strict=True):
            r["p_value_adjusted"] = q
            r["significant"] = decision.significant(exp, q, r["bayes_call"])
    verdict = decide(exp, rows, srm_is_flagged, ended(exp, day, killed_at))
    for r in rows:
        r["decision"] = verdict
        del r["_better"]
    return pa.Table.from_pylist(rows, schema=GOLD_EXPERIMENT_RESULTS.schema)


# ---- health ------------------------------------------------------------------------------


def health_rows(
    exp: Experiment,
    metrics: Mapping[str, Metric],
    day: dt.date,
    stats: pa.Table,
    units: Mapping[str, int],
    crossovers: int,
) -> pa.Table:
    """gold.health rows of one experiment on ``day`` (segment "all").

    - ``crossovers``: units seen in more than one variant (excluded from the analysis); flagged above
      1% of the exposed units.
    - ``metric_without_data``: a metric none of whose analysed units has a non-zero value (or, for
      a ratio, a non-zero denominator): usually a wrong event name or ``where`` filter.
    - ``pre_period_imbalance``: per metric and non-baseline variant, Welch's test of the CUPED
      covariate (the metric over the lookback before first exposure) between the arms. Assignment
      is random, so a difference before exposure points at a broken split or a leaky exposure;
      flagged at p < 0.001.
    """
    rows: list[dict] = []
    analysed = int(sum(units.values()))
    exposed = analysed + int(crossovers)
    share = crossovers / exposed if exposed else 0.0
    rows.append(
        dict(
            check="crossovers",
            subject="",
            value=float(crossovers),
            p_value=None,
            flagged=share > CROSSOVER_SHARE_FLAG,
            detail=f"{crossovers} of {exposed} exposed units seen in more than one variant "
            f"({share:.2%}); excluded",
        )
    )
    main = [r for r in stats.to_pylist() if r["segment"] == ALL_SEGMENT]
    by_key = {(r["metric"], r["variant"]): r for r in main}
    for mid in dict.fromkeys(exp.metric_ids()):
        m = metrics[mid]
        mine = [r for r in main if r["metric"] == mid]
        n = sum(r["n"] for r in mine)
        maturing = sum(r.get("maturing") or 0 for r in mine)  # window not ended yet
        nonzero = sum(r["num_sum_sq"] for r in mine) > 0
        if m.kind == "ratio":
            nonzero = nonzero and sum(r["den_sum_sq"] for r in mine) > 0
        rows.append(
            dict(
                check="metric_without_data",
                subject=mid,
                value=float(sum(r["num_sum"] for r in mine)),
                p_value=None,
                flagged=bool(n > 0 and not nonzero),
                detail=(
                    f"no analysed unit has a value for {mid}: check its event name and filter"
                    if n > 0 and not nonzero
                    else f"{n} analysed units"
                    + (f", {maturing} still maturing" if maturing else "")
                ),
            )
        )
        if exp.analysis.cuped_lookback_days <= 0:
            continue
        base = by_key.get((mid, exp.baseline))
        for vid in exp.variant_ids[1:]:
            arm = by_key.get((mid, vid))
            if base is None or arm is None:
                continue
            # The covariate alone, compared like a metric: X = pre_num (or pre_num/pre_den).
            if m.kind == "ratio":
                pre = [
                    RatioMoments(
                        n=r["n"],
                        num_sum=r["pre_num_sum"],
                        num_sum_sq=r["pre_num_sum_sq"],
                        den_sum=r["pre_den_sum"],
                        den_sum_sq=r["pre_den_sum_sq"],
                        num_den_sum=r["pre_num_pre_den_sum"],
                    )
                    for r in (base, arm)
                ]
            else:
                pre = [
                    Moments(n=r["n"], sum=r["pre_num_sum"], sum_sq=r["pre_num_sum_sq"])
                    for r in (base, arm)
                ]
            c = compare(pre[0], pre[1], relative=False, alpha=exp.analysis.alpha)
            p = _num(c.p_value)
            rows.append(
                dict(
                    check="pre_period_imbalance",
                    subject=f"{mid}/{vid}",
                    value=_num(c.effect),
                    p_value=p,
                    flagged=bool(p is not None and p < IMBALANCE_ALPHA),
                    detail=(
                        f"pre-period {mid}: {vid} {_fmt(c.mean_b)} vs {exp.baseline} "
                        f"{_fmt(c.mean_a)} over the {exp.analysis.cuped_lookback_days} days "
                        "before first exposure"
                    ),
                )
            )
    for r in rows:
        r.update(experiment_id=exp.id, day=day)
    return pa.Table.from_pylist(rows, schema=GOLD_HEALTH.schema)


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.4g}"
