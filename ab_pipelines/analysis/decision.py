"""The decision, once: which estimate a decision rests on, the rules, and the typed scorecard.

Every choice between estimates is made here and nowhere else (docs/analysis.md, "The decision"):

- **CUPED or raw** (:func:`cuped_applies`): CUPED where a pre-period exists and its covariate
  varies in some arm; the fixed-horizon estimate is then the CUPED one (:func:`fixed_horizon`).
- **Sequential or fixed horizon** (:func:`decision_estimate`): the relative lift's always-valid
  estimate when ``analysis.sequential``, else the fixed-horizon one. A metric with no always-valid
  test (a quantile metric: fixed horizon only) reads its fixed-horizon estimate wherever the
  always-valid one would be read (:func:`monitoring_estimate`): the decision, the direction, the
  guardrail check and the daily charts. Its p-value is valid at the planned end only.
- **The family** (:func:`in_family`, :func:`adjust`): primary and secondary metrics of segment
  "all", adjusted by ``analysis.correction``; significant when the adjusted p < α.
- **Guardrail non-inferiority** (:func:`guardrail_check`): the always-valid harm-side bound of the
  relative change against the margin, whatever ``sequential`` says (a quantile metric: the
  fixed-horizon bound, the only one it has).
- **The engine** (:func:`significant`, :func:`engine_effect`): ``analysis.engine`` frequentist
  (the adjusted p-value above) or bayesian (GrowthBook's: a metric decides when its chance to
  win passes ``chance_to_win_threshold`` and the risk of the arm chosen is at most
  ``risk_threshold``, the call stored per row as ``bayes_call``; no multiple-testing
  adjustment, as in GrowthBook). Guardrails keep the always-valid non-inferiority check under
  both engines: safety does not change with the engine.
- **The rule** (:func:`decide`): ``invalid`` (SRM flagged), ``rollback``, ``ship``,
  ``inconclusive``, ``keep_running``, first match wins.

The scorecard (:class:`Scorecard`, :class:`MetricVerdict`, :class:`Estimate`, ...) is what every
face renders: ``abp results`` (text and JSON, :meth:`Scorecard.as_json` is CONTRACTS section 4),
the safety conditions and the dashboard. :meth:`MetricVerdict.from_gold` is the one reading of a
gold.experiment_results row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.stats import adjust_pvalues, guardrail_bound, guardrail_breached

__all__ = [
    "ALL_SEGMENT",
    "DECISIONS",
    "DECISION_TEXT",
    "AnalysisRule",
    "BanditAllocation",
    "Bayesian",
    "Cuped",
    "Estimate",
    "Guardrail",
    "Interaction",
    "Killed",
    "MetricVerdict",
    "AnytimeFdr",
    "DifferentialImpact",
    "Discovery",
    "PlanEntry",
    "Regression",
    "Scorecard",
    "SegmentScorecard",
    "Srm",
    "Standing",
    "adjust",
    "better",
    "cuped_applies",
    "decide",
    "decision_estimate",
    "decision_metrics",
    "engine_effect",
    "fixed_horizon",
    "guardrail_check",
    "in_family",
    "is_significant",
    "monitoring_estimate",
    "significant",
    "view_estimate",
]

ALL_SEGMENT = "all"
DECISIONS = ("keep_running", "ship", "rollback", "inconclusive", "invalid")
#: what a decision means, in one sentence each.
DECISION_TEXT = {
    "keep_running": "Keep running: no variant wins or loses on the primary metrics yet.",
    "ship": "Ship: a variant is significantly better on every primary metric.",
    "rollback": "Roll back: a guardrail is breached, or a primary metric is significantly worse.",
    "inconclusive": "Inconclusive: the experiment has ended without a winner.",
    "invalid": "Invalid: the split is broken (sample ratio mismatch); do not trust these results.",
}

T = TypeVar("T")


def _num(x: Any) -> float | None:
    """A float, or None for None/NaN/inf (a scorecard never holds NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


# ---- the choices ---------------------------------------------------------------------------


def cuped_applies(
    lookback_days: int, base_pre_sum_sq: float, arm_pre_sum_sq: float, cuped_effect: float
) -> bool:
    """Whether a comparison's CUPED estimate stands: a pre-period, a covariate that varies, a number.

    Example:
        >>> cuped_applies(14, 3.0, 0.0, 0.1), cuped_applies(0, 3.0, 2.0, 0.1)
        (True, False)
    """
    has_pre = lookback_days > 0 and (base_pre_sum_sq > 0 or arm_pre_sum_sq > 0)
    return bool(has_pre and np.isfinite(cuped_effect))


def fixed_horizon(raw: T, cuped: T | None) -> T:
    """The fixed-horizon estimate: CUPED where it applies (``cuped`` is not None), else raw."""
    return raw if cuped is None else cuped


def decision_estimate(raw: T, cuped: T | None, always_valid: T, sequential: bool) -> T:
    """The estimate a decision reads: always-valid when ``sequential``, else the fixed horizon's.

    The always-valid estimate is itself on CUPED where CUPED applies (the pipeline computes it so).

    Example:
        >>> decision_estimate("raw", "cuped", "seq", True), decision_estimate("raw", None, "seq", False)
        ('seq', 'raw')
    """
    return always_valid if sequential else fixed_horizon(raw, cuped)


def monitoring_estimate(always_valid: T, fixed: T, fixed_horizon_only: bool) -> T:
    """The estimate read every day (the direction, the guardrail check, the charts): the
    always-valid one, or the fixed-horizon one of a metric that has none (a quantile metric).

    Example:
        >>> monitoring_estimate("seq", "fixed", False), monitoring_estimate("seq", "fixed", True)
        ('seq', 'fixed')
    """
    return fixed if fixed_horizon_only else always_valid


def view_estimate(
    raw: T,
    cuped: T | None,
    always_valid: T,
    *,
    want_cuped: bool,
    want_sequential: bool,
    fixed_horizon_only: bool = False,
) -> tuple[T, str]:
    """The estimate a reader asked to see (CUPED or raw, always-valid or fixed), and its label.

    Only the always-valid estimate on CUPED is stored where CUPED applies, so asking for raw
    always-valid there shows it, labelled so. A fixed-horizon-only metric (quantile) shows its
    fixed-horizon estimate whatever was asked.
    """
    if fixed_horizon_only:
        return raw, "fixed horizon only (quantile)"
    has_cuped = cuped is not None
    if want_sequential:
        label = "always-valid, CUPED" if has_cuped else "always-valid, raw"
        if has_cuped and not want_cuped:
            label += " (raw not stored)"
        return always_valid, label
    if want_cuped and cuped is not None:
        return cuped, "fixed-horizon, CUPED"
    return raw, "fixed-horizon, raw" + (" (no pre-period)" if want_cuped else "")


def better(relative_effect: float | None, higher_is_better: bool) -> bool | None:
    """Whether a relative effect points the metric's good way; None for no effect (None or 0)."""
    if relative_effect is None or relative_effect == 0:
        return None
    return (relative_effect > 0) == higher_is_better


def decision_metrics(exp: Experiment, metrics: Mapping[str, Metric]) -> list[str]:
    """The metrics an experiment decides on beyond its family: its primary metrics, then its
    guardrails (each once), quantile metrics left out (no per-unit or per-level moments to
    pool). What the interaction scan and the differential-impact test examine."""
    ids = [*exp.metrics.primary, *(g.metric for g in exp.metrics.guardrails)]
    return [m for m in dict.fromkeys(ids) if m in metrics and metrics[m].kind != "quantile"]


def in_family(role: str, segment: str) -> bool:
    """Whether a row is in the multiple-testing family: primary or secondary, segment "all"."""
    return segment == ALL_SEGMENT and role in ("primary", "secondary")


def adjust(p_values: Sequence[float | None], correction: str) -> list[float | None]:
    """The family's decision p-values adjusted by ``correction`` (``holm``, ``bh`` or ``none``)."""
    # Only a missing p-value is missing: one of exactly 0 (an effect so large that the tail
    # underflows) is the most significant of all (it used to be read as missing, silently).
    p = np.array([np.nan if x is None else x for x in p_values], dtype=float)
    adj = p if correction == "none" else adjust_pvalues(p, method=correction)
    return [_num(q) for q in adj]


def is_significant(p_value_adjusted: float | None, alpha: float) -> bool:
    """Significant: the adjusted p-value exists and lies below α."""
    return p_value_adjusted is not None and p_value_adjusted < alpha


def significant(exp: Experiment, p_value_adjusted: float | None, bayes_call: str | None) -> bool:
    """Whether a family row decides, under the experiment's engine: the adjusted p-value below α
    (frequentist), or the Bayesian call is ``ship`` or ``rollback`` (bayesian).

    Example:
        >>> from ab_pipelines.config.models import Analysis
        >>> e = Experiment(id="e", name="e", owner="o", start_date=dt.date(2026, 1, 1),
        ...                variants=[{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}],
        ...                analysis=Analysis(engine="bayesian"))
        >>> significant(e, 0.001, "keep_running"), significant(e, 0.5, "ship")
        (False, True)
    """
    if exp.analysis.engine == "bayesian":
        return bayes_call in ("ship", "rollback")
    return is_significant(p_value_adjusted, exp.analysis.alpha)


def engine_effect(
    exp: Experiment, sequential_relative: float | None, bayes_relative: float | None
) -> float | None:
    """The relative effect whose sign says better or worse under the experiment's engine: the
    posterior mean (bayesian), else the always-valid estimate."""
    return bayes_relative if exp.analysis.engine == "bayesian" else sequential_relative


# ---- the typed scorecard -------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One estimate: the effect, its interval and p-value (None where it cannot be computed)."""

    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None

    @classmethod
    def from_gold(cls, row: Mapping[str, Any], prefix: str) -> Estimate:
        """The ``{prefix}_effect``, ``_ci_low``, ``_ci_high``, ``_p_value`` columns of a row."""
        return cls(
            row[f"{prefix}_effect"],
            row[f"{prefix}_ci_low"],
            row[f"{prefix}_ci_high"],
            row[f"{prefix}_p_value"],
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Estimate:
        return cls(d["effect"], d["ci_low"], d["ci_high"], d["p_value"])

    def as_json(self) -> dict[str, float | None]:
        return {
            "effect": self.effect,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class Cuped:
    """The CUPED estimates of a comparison (θ pooled over both arms) and the variance they cut."""

    theta: float | None
    variance_reduction: float | None
    absolute: Estimate
    relative: Estimate

    def as_json(self) -> dict[str, Any]:
        return {
            "theta": self.theta,
            "variance_reduction": self.variance_reduction,
            "absolute": self.absolute.as_json(),
            "relative": self.relative.as_json(),
        }


@dataclass(frozen=True)
class Bayesian:
    """The Bayesian engine's posterior of the relative lift (CUPED where it applies): its mean,
    credible interval, chance to win (in the metric's good direction), the expected loss of
    keeping the baseline and of shipping the variant (relative to the baseline mean), and the
    call of the engine's rule (``ship``, ``rollback``, ``keep_running``)."""

    effect: float | None
    ci_low: float | None
    ci_high: float | None
    chance_to_win: float | None
    risk_control: float | None
    risk_variant: float | None
    call: str | None

    _FIELDS = ("effect", "ci_low", "ci_high", "chance_to_win", "risk_control", "risk_variant")

    @classmethod
    def from_gold(cls, row: Mapping[str, Any]) -> Bayesian | None:
        """The ``bayes_*`` columns; None on rows written before they existed."""
        if row.get("bayes_call") is None:
            return None
        return cls(*(row[f"bayes_{f}"] for f in cls._FIELDS), row["bayes_call"])

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Bayesian | None:
        return None if d is None else cls(*(d[f] for f in cls._FIELDS), d["call"])

    def as_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self._FIELDS} | {"call": self.call}


@dataclass(frozen=True)
class Guardrail:
    """Non-inferiority of a guardrail: the always-valid harm-side bound against the margin."""

    margin: float | None
    bound: float | None
    breached: bool | None

    def as_json(self) -> dict[str, Any]:
        return {"margin": self.margin, "bound": self.bound, "breached": self.breached}


def guardrail_check(
    margin: float, low: float | None, high: float | None, higher_is_better: bool
) -> Guardrail:
    """The guardrail verdict from the always-valid relative interval ``[low, high]`` (a
    fixed-horizon-only metric's fixed-horizon interval, :func:`monitoring_estimate`).

    Breached when the harm-side bound lies beyond ``margin`` (CONTRACTS section 5); a missing
    bound is never a breach.

    Example:
        >>> guardrail_check(0.02, 0.03, 0.05, higher_is_better=False).breached
        True
    """
    low_, high_ = (np.nan if x is None else x for x in (low, high))
    return Guardrail(
        margin=margin,
        bound=_num(guardrail_bound(low_, high_, higher_is_better)),
        breached=bool(guardrail_breached(low_, high_, margin, higher_is_better)),
    )


@dataclass(frozen=True)
class Regression:
    """Regression adjustment on several covariates (report only: never what a decision reads):
    the fixed-horizon estimates, the variance cut against the raw estimate, the covariates kept."""

    variance_reduction: float | None
    covariates: list[str]
    absolute: Estimate
    relative: Estimate

    @classmethod
    def from_gold(cls, row: Mapping[str, Any]) -> Regression | None:
        """The ``adj_*`` columns; None without them (no analysis.covariates, or older rows)."""
        if row.get("adj_covariates") is None:
            return None
        return cls(
            row["adj_variance_reduction"],
            list(row["adj_covariates"]),
            Estimate.from_gold(row, "adj_abs"),
            Estimate.from_gold(row, "adj_rel"),
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Regression | None:
        if d is None:
            return None
        return cls(
            d["variance_reduction"],
            list(d["covariates"]),
            Estimate.from_json(d["absolute"]),
            Estimate.from_json(d["relative"]),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "covariates": self.covariates,
            "variance_reduction": self.variance_reduction,
            "absolute": self.absolute.as_json(),
            "relative": self.relative.as_json(),
        }


@dataclass(frozen=True)
class Poststratified:
    """The relative lift post-stratified on a segment attribute (GrowthBook's approach; report
    only: never what a decision reads)."""

    attribute: str
    relative: Estimate

    @classmethod
    def from_gold(cls, row: Mapping[str, Any]) -> Poststratified | None:
        """The ``ps_*`` columns; None without them (no analysis.poststratify, or older rows)."""
        if row.get("ps_attribute") is None:
            return None
        return cls(row["ps_attribute"], Estimate.from_gold(row, "ps_rel"))

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Poststratified | None:
        return None if d is None else cls(d["attribute"], Estimate.from_json(d["relative"]))

    def as_json(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "relative": self.relative.as_json()}


@dataclass(frozen=True)
class MetricVerdict:
    """One metric × non-baseline variant × segment: its estimates and where the decision stands.

    ``guardrail`` is set wherever the metric has a margin (the check ran); the JSON face shows it
    on guardrail rows only (CONTRACTS section 4). ``kind`` is the metric's kind as computed
    (None on rows written before it was stored); a quantile metric also has ``quantile`` (ν) and
    ``level`` (event | unit), its ``mean_*`` are the arms' sample quantiles and it is fixed
    horizon only: no sequential, CUPED or Bayesian estimates.
    """

    metric: str
    role: str
    variant: str
    baseline: str
    segment: str
    n_baseline: int | None
    n_variant: int | None
    mean_baseline: float | None
    mean_variant: float | None
    absolute: Estimate
    relative: Estimate
    cuped: Cuped | None
    sequential_absolute: Estimate
    sequential_relative: Estimate
    p_value_adjusted: float | None = None
    significant: bool | None = None
    guardrail: Guardrail | None = None
    bayesian: Bayesian | None = None
    maturing_baseline: int | None = None
    maturing_variant: int | None = None
    kind: str | None = None
    quantile: float | None = None
    level: str | None = None
    regression: Regression | None = None
    poststratified: Poststratified | None = None

    @classmethod
    def from_gold(cls, row: Mapping[str, Any]) -> MetricVerdict:
        """A gold.experiment_results row (or one being built) as a verdict."""
        cuped = None
        if row["cuped_theta"] is not None:
            cuped = Cuped(
                theta=row["cuped_theta"],
                variance_reduction=row["cuped_variance_reduction"],
                absolute=Estimate.from_gold(row, "cuped_abs"),
                relative=Estimate.from_gold(row, "cuped_rel"),
            )
        guard = None
        if row["guardrail_margin"] is not None or row["role"] == "guardrail":
            guard = Guardrail(
                row["guardrail_margin"], row["guardrail_bound"], row["guardrail_breached"]
            )
        return cls(
            metric=row["metric"],
            role=row["role"],
            variant=row["variant"],
            baseline=row["baseline"],
            segment=row["segment"],
            n_baseline=row["n_baseline"],
            n_variant=row["n_variant"],
            mean_baseline=row["mean_baseline"],
            mean_variant=row["mean_variant"],
            absolute=Estimate.from_gold(row, "abs"),
            relative=Estimate.from_gold(row, "rel"),
            cuped=cuped,
            sequential_absolute=Estimate.from_gold(row, "seq_abs"),
            sequential_relative=Estimate.from_gold(row, "seq_rel"),
            p_value_adjusted=row["p_value_adjusted"],
            significant=row["significant"],
            guardrail=guard,
            bayesian=Bayesian.from_gold(row),
            maturing_baseline=row.get("maturing_baseline"),
            maturing_variant=row.get("maturing_variant"),
            kind=row.get("metric_kind"),
            quantile=row.get("metric_quantile"),
            level=row.get("metric_level"),
            regression=Regression.from_gold(row),
            poststratified=Poststratified.from_gold(row),
        )

    @classmethod
    def from_json(cls, e: Mapping[str, Any], segment: str = ALL_SEGMENT) -> MetricVerdict:
        """A metric entry of the JSON face back as a verdict."""
        base, var = e["baseline"], e["variant"]
        c, g = e.get("cuped"), e.get("guardrail")
        seq = e.get("sequential") or {}  # null for a fixed-horizon-only metric
        return cls(
            metric=e["metric"],
            role=e["role"],
            variant=var,
            baseline=base,
            segment=segment,
            n_baseline=e["n"].get(base),
            n_variant=e["n"].get(var),
            mean_baseline=e["mean"].get(base),
            mean_variant=e["mean"].get(var),
            absolute=Estimate.from_json(e["absolute"]),
            relative=Estimate.from_json(e["relative"]),
            cuped=None
            if c is None
            else Cuped(
                c["theta"],
                c["variance_reduction"],
                Estimate.from_json(c["absolute"]),
                Estimate.from_json(c["relative"]),
            ),
            sequential_absolute=Estimate.from_json(seq["absolute"]) if seq else Estimate(),
            sequential_relative=Estimate.from_json(seq["relative"]) if seq else Estimate(),
            p_value_adjusted=e.get("p_value_adjusted"),
            significant=e.get("significant"),
            guardrail=None if g is None else Guardrail(g["margin"], g["bound"], g["breached"]),
            bayesian=Bayesian.from_json(e.get("bayesian")),
            maturing_baseline=(e.get("maturing") or {}).get(base),
            maturing_variant=(e.get("maturing") or {}).get(var),
            kind=e.get("kind"),
            quantile=e.get("quantile"),
            level=e.get("level"),
            regression=Regression.from_json(e.get("regression")),
            poststratified=Poststratified.from_json(e.get("poststratified")),
        )

    def arms(self) -> dict[str, Any]:
        """Which comparison this is, and both arms' units and means (for details and tables)."""
        return {
            "metric": self.metric,
            "variant": self.variant,
            "baseline": self.baseline,
            "n_baseline": self.n_baseline,
            "n_variant": self.n_variant,
            "mean_baseline": self.mean_baseline,
            "mean_variant": self.mean_variant,
        }

    @property
    def fixed_horizon_only(self) -> bool:
        """Whether the metric has no always-valid test (a quantile metric)."""
        return self.kind == "quantile"

    @property
    def statistic(self) -> str:
        """What ``mean_*`` hold: ``mean``, or a quantile metric's quantile, e.g. ``p90 of events``
        (level event) or ``p50 per unit`` (level unit)."""
        if not self.fixed_horizon_only:
            return "mean"
        name = "quantile" if self.quantile is None else f"p{round(100 * self.quantile, 6):g}"
        return f"{name} of events" if self.level == "event" else f"{name} per unit"

    @property
    def fixed_relative(self) -> Estimate:
        """The fixed-horizon relative estimate: CUPED where it applies (the "fixed p")."""
        return fixed_horizon(self.relative, None if self.cuped is None else self.cuped.relative)

    @property
    def monitoring_relative(self) -> Estimate:
        """The relative estimate read every day: always-valid, or fixed-horizon for a
        fixed-horizon-only metric (:func:`monitoring_estimate`)."""
        return monitoring_estimate(
            self.sequential_relative, self.fixed_relative, self.fixed_horizon_only
        )

    def decision_relative(self, sequential: bool) -> Estimate:
        """The relative estimate the decision reads under the experiment's ``sequential`` (the
        fixed-horizon one for a fixed-horizon-only metric, whatever ``sequential`` says)."""
        cuped = None if self.cuped is None else self.cuped.relative
        return decision_estimate(
            self.relative,
            cuped,
            self.sequential_relative,
            sequential and not self.fixed_horizon_only,
        )

    def view(self, want_cuped: bool, want_sequential: bool) -> tuple[Estimate, str]:
        """The relative estimate a reader asked for, and its label (:func:`view_estimate`)."""
        cuped = None if self.cuped is None else self.cuped.relative
        return view_estimate(
            self.relative,
            cuped,
            self.sequential_relative,
            want_cuped=want_cuped,
            want_sequential=want_sequential,
            fixed_horizon_only=self.fixed_horizon_only,
        )

    @property
    def breached(self) -> bool:
        """Whether this row's guardrail is breached."""
        return bool(self.guardrail is not None and self.guardrail.breached)

    @property
    def shown_guardrail(self) -> Guardrail | None:
        """The guardrail as the faces show it: on guardrail rows only."""
        return self.guardrail if self.role == "guardrail" else None

    def standing(self, higher_is_better: bool) -> Standing:
        """What the decision rule reads of this row."""
        return Standing(
            metric=self.metric,
            role=self.role,
            variant=self.variant,
            significant=bool(self.significant),
            better=better(self.monitoring_relative.effect, higher_is_better),
            breached=self.breached,
        )

    def as_json(self, bayesian: bool = False) -> dict[str, Any]:
        """The metric entry of CONTRACTS section 4; with ``bayesian`` (the experiment's engine),
        also the posterior under key ``bayesian``.

        Beyond the contract: ``kind`` (when stored); ``regression`` (report only) when the
        experiment sets ``analysis.covariates``; for a quantile metric ``quantile`` (ν)
        and ``level``; its ``mean`` holds the arms' sample quantiles, its ``n`` the units the
        quantiles are of, and ``sequential`` is null (fixed horizon only).
        """
        base, var = self.baseline, self.variant
        entry: dict[str, Any] = {"metric": self.metric}
        if self.kind is not None:
            entry["kind"] = self.kind
        if self.fixed_horizon_only:
            entry["quantile"] = self.quantile
            entry["level"] = self.level
        entry |= {
            "role": self.role,
            "variant": var,
            "baseline": base,
            "n": {base: self.n_baseline, var: self.n_variant},
            "mean": {base: self.mean_baseline, var: self.mean_variant},
            "absolute": self.absolute.as_json(),
            "relative": self.relative.as_json(),
            "cuped": None if self.cuped is None else self.cuped.as_json(),
            "sequential": None
            if self.fixed_horizon_only
            else {
                "absolute": self.sequential_absolute.as_json(),
                "relative": self.sequential_relative.as_json(),
            },
            "p_value_adjusted": self.p_value_adjusted,
            "significant": self.significant,
        }
        if self.shown_guardrail is not None:
            entry["guardrail"] = self.shown_guardrail.as_json()
        if bayesian:
            entry["bayesian"] = None if self.bayesian is None else self.bayesian.as_json()
        if self.maturing:
            entry["maturing"] = {base: self.maturing_baseline, var: self.maturing_variant}
        if self.regression is not None:
            entry["regression"] = self.regression.as_json()
        if self.poststratified is not None:
            entry["poststratified"] = self.poststratified.as_json()
        return entry

    @property
    def maturing(self) -> int:
        """Units of both arms not counted yet because the metric's window had not ended."""
        return (self.maturing_baseline or 0) + (self.maturing_variant or 0)


# ---- the rule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """What the decision rule reads of one (metric, variant) of segment "all"."""

    metric: str
    role: str
    variant: str
    significant: bool
    better: bool | None
    breached: bool


def decide(
    exp: Experiment, standings: Iterable[Standing], srm_flagged: bool, has_ended: bool
) -> str:
    """The experiment's decision (CONTRACTS section 4), first match wins.

    ``invalid`` (SRM flagged on segment "all"); ``rollback`` (a guardrail breached, or a primary
    metric significantly worse for some variant); ``ship`` (some variant significantly better on
    every primary metric; never without primary metrics); ``inconclusive`` (ended); else
    ``keep_running``.
    """
    if srm_flagged:
        return "invalid"
    rows = list(standings)
    if any(r.breached for r in rows):
        return "rollback"
    primary = [r for r in rows if r.role == "primary"]
    if any(r.significant and r.better is False for r in primary):
        return "rollback"
    for vid in exp.variant_ids[1:]:
        mine = [r for r in primary if r.variant == vid]
        if mine and all(r.significant and r.better for r in mine):
            return "ship"
    return "inconclusive" if has_ended else "keep_running"


# ---- the scorecard -------------------------------------------------------------------------


@dataclass(frozen=True)
class Srm:
    """The sample ratio test of one segment: p-value, flag and analysed units per variant."""

    p_value: float | None = None
    flagged: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_gold(cls, rows: Sequence[Mapping[str, Any]]) -> Srm:
        """gold.srm rows of one experiment, day and segment (one per variant)."""
        return cls(
            p_value=rows[0]["p_value"] if rows else None,
            flagged=any(bool(r["flagged"]) for r in rows),
            counts={r["variant"]: r["units"] for r in rows},
        )

    def as_json(self) -> dict[str, Any]:
        return {"p_value": self.p_value, "flagged": self.flagged, "counts": dict(self.counts)}


@dataclass(frozen=True)
class Killed:
    """The kill switch: when, by whom, why."""

    at: dt.datetime
    by: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"at": self.at.isoformat(), "by": self.by, "reason": self.reason}


@dataclass(frozen=True)
class Provenance:
    """What produced a day's rows: the experiment's registry content sha and the config version
    in force (stamped on the gold rows by ``analysis.state``), beside today's registry sha.

    ``changed_since``: the experiment's definition (its plan) changed after that day was computed;
    None when either sha is unknown (rows written before provenance was recorded).
    """

    registry_sha: str | None
    config_version: int | None
    current_registry_sha: str | None = None

    @property
    def changed_since(self) -> bool | None:
        if self.registry_sha is None or self.current_registry_sha is None:
            return None
        return self.registry_sha != self.current_registry_sha

    def as_json(self) -> dict[str, Any]:
        return {
            "registry_sha": self.registry_sha,
            "config_version": self.config_version,
            "current_registry_sha": self.current_registry_sha,
            "changed_since": self.changed_since,
        }

    @classmethod
    def from_json(cls, face: Mapping[str, Any]) -> Provenance:
        return cls(face["registry_sha"], face["config_version"], face["current_registry_sha"])


@dataclass(frozen=True)
class AnalysisRule:
    """The experiment's decision settings: α, sequential or fixed horizon, the correction."""

    alpha: float
    sequential: bool
    correction: str
    engine: str = "frequentist"
    chance_to_win_threshold: float | None = None
    risk_threshold: float | None = None

    @classmethod
    def of(cls, exp: Experiment) -> AnalysisRule:
        a = exp.analysis
        if a.engine == "bayesian":
            return cls(
                a.alpha,
                a.sequential,
                a.correction,
                a.engine,
                a.chance_to_win_threshold,
                a.risk_threshold,
            )
        return cls(a.alpha, a.sequential, a.correction)

    @property
    def bayesian(self) -> bool:
        return self.engine == "bayesian"

    @property
    def decision_p_value(self) -> str:
        if self.bayesian:
            return "none (Bayesian: chance to win and risk decide)"
        return "always-valid (sequential)" if self.sequential else "fixed-horizon"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alpha": self.alpha,
            "sequential": self.sequential,
            "correction": self.correction,
            "decision_p_value": self.decision_p_value,
            "engine": self.engine,
        }
        if self.bayesian:
            out["chance_to_win_threshold"] = self.chance_to_win_threshold
            out["risk_threshold"] = self.risk_threshold
        return out

    @classmethod
    def from_json(cls, a: Mapping[str, Any]) -> AnalysisRule:
        return cls(
            a["alpha"],
            a["sequential"],
            a["correction"],
            a.get("engine", "frequentist"),
            a.get("chance_to_win_threshold"),
            a.get("risk_threshold"),
        )


@dataclass(frozen=True)
class PlanEntry:
    """How far a primary metric is from the MDE: units per arm and days still needed."""

    metric: str
    units_per_arm: int
    mde_now: float | None
    mde_target: float | None
    units_per_arm_needed: int | None = None
    days_more: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "units_per_arm": self.units_per_arm,
            "mde_now": self.mde_now,
            "mde_target": self.mde_target,
            "units_per_arm_needed": self.units_per_arm_needed,
            "days_more": self.days_more,
        }


@dataclass(frozen=True)
class SegmentScorecard:
    """An exploratory segment: its SRM and metric rows, never part of the decision."""

    segment: str
    srm: Srm | None
    metrics: tuple[MetricVerdict, ...]

    @classmethod
    def from_json(cls, seg: Mapping[str, Any]) -> SegmentScorecard:
        srm = seg.get("srm")
        return cls(
            segment=seg["segment"],
            srm=None if srm is None else Srm(srm["p_value"], srm["flagged"]),
            metrics=tuple(MetricVerdict.from_json(e, seg["segment"]) for e in seg["metrics"]),
        )

    def as_json(self, bayesian: bool = False) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "exploratory": True,
            "srm": None
            if self.srm is None
            else {"p_value": self.srm.p_value, "flagged": self.srm.flagged},
            "metrics": [m.as_json(bayesian) for m in self.metrics],
        }


@dataclass(frozen=True)
class DifferentialImpact:
    """Whether a decision metric's effect differs across the levels of a segment attribute (a
    gold.heterogeneity row: Cochran's Q, BH-adjusted across the experiment's tests)."""

    metric: str
    variant: str
    attribute: str
    p_value: float | None
    p_adjusted: float | None
    i2: float | None
    pooled_effect: float | None
    flagged: bool
    levels: tuple[str, ...]
    level_effects: tuple[float | None, ...]
    drivers: tuple[str, ...] = ()

    @classmethod
    def from_gold(cls, row: Mapping[str, Any]) -> DifferentialImpact:
        return cls(
            metric=row["metric"],
            variant=row["variant"],
            attribute=row["attribute"],
            p_value=_num(row["p_value"]),
            p_adjusted=_num(row["p_adjusted"]),
            i2=_num(row["i2"]),
            pooled_effect=_num(row["pooled_effect"]),
            flagged=bool(row["flagged"]),
            levels=tuple(row["level_names"] or ()),
            level_effects=tuple(_num(x) for x in row["level_effects"] or ()),
            drivers=tuple(row["drivers"] or ()),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "variant": self.variant,
            "attribute": self.attribute,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "i2": self.i2,
            "pooled_effect": self.pooled_effect,
            "flagged": self.flagged,
            "levels": [
                {"segment": s, "effect": e}
                for s, e in zip(self.levels, self.level_effects, strict=True)
            ],
            "drivers": list(self.drivers),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DifferentialImpact:
        return cls(
            metric=d["metric"],
            variant=d["variant"],
            attribute=d["attribute"],
            p_value=d["p_value"],
            p_adjusted=d["p_adjusted"],
            i2=d["i2"],
            pooled_effect=d["pooled_effect"],
            flagged=d["flagged"],
            levels=tuple(x["segment"] for x in d["levels"]),
            level_effects=tuple(x["effect"] for x in d["levels"]),
            drivers=tuple(d["drivers"]),
        )


@dataclass(frozen=True)
class BanditAllocation:
    """A bandit's weights over time, for its scorecard (docs/analysis.md, "Bandits").

    ``periods``: each allocation period, oldest first: ``version`` (the config version that
    started serving it; 0: the YAML's weights), ``start`` (ISO time; None: since the start),
    ``weights`` (per arm) and ``units`` (the analysed units first exposed in it). ``updates``:
    each analysis day's step, oldest first: ``day``, ``weights`` (to publish next),
    ``best_probability`` (per arm), ``updated`` and ``reason``. The results are weighted by period.
    """

    metric: str
    variants: tuple[str, ...]
    periods: tuple[Mapping[str, Any], ...]
    updates: tuple[Mapping[str, Any], ...]
    weighting: str = "by period"

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "weighting": self.weighting,
            "variants": list(self.variants),
            "periods": [dict(p) for p in self.periods],
            "updates": [dict(u) for u in self.updates],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BanditAllocation:
        return cls(
            metric=d["metric"],
            variants=tuple(d["variants"]),
            periods=tuple(d["periods"]),
            updates=tuple(d["updates"]),
            weighting=d.get("weighting", "by period"),
        )


@dataclass(frozen=True)
class Interaction:
    """A gold.interactions row that involves the card's experiment: does its effect on a metric
    depend on another concurrent experiment's arm (the scan's Wald test, BH across the day)."""

    experiment_a: str
    experiment_b: str
    metric: str
    p_value: float | None
    p_adjusted: float | None
    flagged: bool
    cells: tuple[tuple[str, str, int, float | None], ...]  # (a's arm, b's arm, n, mean)
    effect_in_baseline: float | None = None  # a's effect (driver arm) in b's baseline
    effect_in_driver: float | None = None  # ... and in b's driver arm
    driver_b: str | None = None

    @classmethod
    def from_gold(cls, row: Mapping[str, Any]) -> Interaction:
        return cls(
            experiment_a=row["experiment_a"],
            experiment_b=row["experiment_b"],
            metric=row["metric"],
            p_value=_num(row["p_value"]),
            p_adjusted=_num(row["p_adjusted"]),
            flagged=bool(row["flagged"]),
            cells=tuple(
                (a, b, int(n), _num(m))
                for a, b, n, m in zip(
                    row["cell_a"] or (),
                    row["cell_b"] or (),
                    row["cell_n"] or (),
                    row["cell_mean"] or (),
                    strict=True,
                )
            ),
            effect_in_baseline=_num(row.get("effect_in_baseline")),
            effect_in_driver=_num(row.get("effect_in_driver")),
            driver_b=row.get("driver_b"),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "experiment_a": self.experiment_a,
            "experiment_b": self.experiment_b,
            "metric": self.metric,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "flagged": self.flagged,
            "cells": [{"a": a, "b": b, "n": n, "mean": m} for a, b, n, m in self.cells],
            "effect_in_baseline": self.effect_in_baseline,
            "effect_in_driver": self.effect_in_driver,
            "driver_b": self.driver_b,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Interaction:
        return cls(
            experiment_a=d["experiment_a"],
            experiment_b=d["experiment_b"],
            metric=d["metric"],
            p_value=d["p_value"],
            p_adjusted=d["p_adjusted"],
            flagged=d["flagged"],
            cells=tuple((c["a"], c["b"], c["n"], c["mean"]) for c in d["cells"]),
            effect_in_baseline=d.get("effect_in_baseline"),
            effect_in_driver=d.get("effect_in_driver"),
            driver_b=d.get("driver_b"),
        )


@dataclass(frozen=True)
class Discovery:
    """A (metric, variant) that e-BH under continuous monitoring has rejected: since which day,
    and the e-value it was rejected with (frozen there)."""

    metric: str
    variant: str
    since: dt.date
    e_value: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "variant": self.variant,
            "since": self.since.isoformat(),
            "e_value": self.e_value,
        }


@dataclass(frozen=True)
class AnytimeFdr:
    """e-BH (Wang & Ramdas 2022) over every look so far at an experiment's metrics and variants:
    the discoveries whose false discovery rate holds at ``alpha`` whenever the card is read."""

    alpha: float
    hypotheses: int
    looks: int
    discoveries: tuple[Discovery, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "method": "e-BH over the always-valid e-values of every metric and variant, "
            "every analysed day so far",
            "alpha": self.alpha,
            "hypotheses": self.hypotheses,
            "looks": self.looks,
            "discoveries": [d.as_json() for d in self.discoveries],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AnytimeFdr:
        return cls(
            alpha=d["alpha"],
            hypotheses=d["hypotheses"],
            looks=d["looks"],
            discoveries=tuple(
                Discovery(
                    x["metric"], x["variant"], dt.date.fromisoformat(x["since"]), x["e_value"]
                )
                for x in d["discoveries"]
            ),
        )


@dataclass(frozen=True, eq=False)
class Scorecard(Mapping[str, Any]):
    """An experiment's scorecard on one day: what ``abp results``, the alerts and the dashboard show.

    Also a read-only mapping over its JSON face (:meth:`as_json`, CONTRACTS section 4):
    ``card["decision"]`` reads it, and a scorecard equals another, or a dict, with the same face.
    """

    experiment_id: str
    as_of: dt.date
    status: str
    decision: str
    srm: Srm
    metrics: tuple[MetricVerdict, ...]
    analysis: AnalysisRule
    killed: Killed | None = None
    plan: tuple[PlanEntry, ...] = ()
    segments: tuple[SegmentScorecard, ...] = ()
    read_at_versions: Mapping[str, int | None] | None = None
    provenance: Provenance | None = None
    differential_impact: tuple[DifferentialImpact, ...] = ()
    anytime_fdr: AnytimeFdr | None = None
    interactions: tuple[Interaction, ...] = ()
    bandit: BanditAllocation | None = None

    @property
    def guardrails(self) -> tuple[MetricVerdict, ...]:
        return tuple(m for m in self.metrics if m.role == "guardrail")

    @property
    def breaches(self) -> tuple[MetricVerdict, ...]:
        """The rows of segment "all" whose guardrail is breached."""
        return tuple(m for m in self.metrics if m.breached)

    def as_json(self) -> dict[str, Any]:
        """The JSON object of ``abp results --json`` (CONTRACTS section 4), keys in their order."""
        out: dict[str, Any] = {
            "experiment_id": self.experiment_id,
            "as_of": self.as_of.isoformat(),
            "status": self.status,
            "decision": self.decision,
            "srm": self.srm.as_json(),
            "metrics": [m.as_json(self.analysis.bayesian) for m in self.metrics],
            "killed": None if self.killed is None else self.killed.as_json(),
            "analysis": self.analysis.as_json(),
            "plan": [p.as_json() for p in self.plan],
        }
        if self.read_at_versions is not None:
            out["read_at_versions"] = dict(self.read_at_versions)
        if self.segments:
            out["segments"] = [s.as_json(self.analysis.bayesian) for s in self.segments]
        if self.provenance is not None:
            out["provenance"] = self.provenance.as_json()
        if self.differential_impact:
            out["differential_impact"] = [d.as_json() for d in self.differential_impact]
        if self.anytime_fdr is not None:
            out["anytime_fdr"] = self.anytime_fdr.as_json()
        if self.interactions:
            out["interactions"] = [i.as_json() for i in self.interactions]
        if self.bandit is not None:
            out["bandit"] = self.bandit.as_json()
        return out

    @classmethod
    def from_json(cls, card: Mapping[str, Any]) -> Scorecard:
        """The JSON face (:meth:`as_json`) back as a scorecard."""
        killed = card.get("killed")
        a = card["analysis"]
        srm = card["srm"]
        return cls(
            experiment_id=card["experiment_id"],
            as_of=dt.date.fromisoformat(card["as_of"]),
            status=card["status"],
            decision=card["decision"],
            srm=Srm(srm["p_value"], srm["flagged"], dict(srm["counts"])),
            metrics=tuple(MetricVerdict.from_json(e) for e in card["metrics"]),
            analysis=AnalysisRule.from_json(a),
            killed=None
            if killed is None
            else Killed(dt.datetime.fromisoformat(killed["at"]), killed["by"], killed["reason"]),
            plan=tuple(PlanEntry(**p) for p in card.get("plan") or ()),
            segments=tuple(SegmentScorecard.from_json(s) for s in card.get("segments") or ()),
            read_at_versions=card.get("read_at_versions"),
            provenance=Provenance.from_json(card["provenance"]) if card.get("provenance") else None,
            differential_impact=tuple(
                DifferentialImpact.from_json(d) for d in card.get("differential_impact") or ()
            ),
            anytime_fdr=AnytimeFdr.from_json(card["anytime_fdr"])
            if card.get("anytime_fdr")
            else None,
            interactions=tuple(Interaction.from_json(i) for i in card.get("interactions") or ()),
            bandit=BanditAllocation.from_json(card["bandit"]) if card.get("bandit") else None,
        )

    def __getitem__(self, key: str) -> Any:
        return self.as_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_json())

    def __len__(self) -> int:
        return len(self.as_json())
