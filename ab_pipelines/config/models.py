"""The registry's YAML as pydantic models (CONTRACTS section 3). Every field is documented here."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "Analysis",
    "Approval",
    "Bandit",
    "EventAgg",
    "Experiment",
    "ExperimentMetrics",
    "Guardrail",
    "Holdout",
    "Metric",
    "Prior",
    "Variant",
    "STATUSES",
    "Status",
]

Status = Literal["draft", "in_review", "approved", "running", "stopped"]
STATUSES: tuple[str, ...] = (
    "draft",
    "in_review",
    "approved",
    "running",
    "stopped",
)  # lifecycle order


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


WEIGHT_TOLERANCE = 1e-9


class Variant(_Model):
    """One arm: its id and its share of the experiment's traffic (weights sum to 1)."""

    id: str
    weight: float = Field(gt=0, le=1)


class Guardrail(_Model):
    """A metric that must not be harmed by more than ``max_relative_change``."""

    metric: str
    max_relative_change: float = Field(gt=0)


class ExperimentMetrics(_Model):
    """Metric ids by role; the family for multiple testing is primary + secondary."""

    primary: list[str] = Field(default_factory=list)
    secondary: list[str] = Field(default_factory=list)
    guardrails: list[Guardrail] = Field(default_factory=list)


class Approval(_Model):
    """A reviewer's approval of the content whose sha is given (stale once the content changes)."""

    by: str
    at: dt.datetime
    sha: str


ATTRIBUTE_COVARIATE = "attribute:"  # an Analysis.covariates entry naming an exposure attribute


class Analysis(_Model):
    """Analysis settings of one experiment."""

    alpha: float = Field(default=0.05, gt=0, lt=1)
    cuped_lookback_days: int = Field(default=14, ge=0)
    sequential: bool = True
    correction: Literal["holm", "bh", "none"] = "holm"
    mde: float | None = Field(default=None, gt=0)
    late_arrival_days: int = Field(default=1, ge=0)
    # Exploratory cuts: exposure attributes (e.g. platform, country) whose top values each get
    # their own results ("<attribute>=<value>", the rest "<attribute>=other"). Never decide.
    segments: list[str] = Field(default_factory=list)
    segment_top_n: int = Field(default=5, ge=1, le=50)
    # The engine a decision rests on (docs/analysis.md, "Bayesian engine"): frequentist (adjusted
    # p-values, always-valid when sequential) or bayesian (GrowthBook's: chance to win and risk).
    engine: Literal["frequentist", "bayesian"] = "frequentist"
    # Bayesian: a metric decides when its chance to win exceeds this (a loser below 1 - it) ...
    chance_to_win_threshold: float = Field(default=0.95, gt=0.5, lt=1)
    # ... and the expected loss of the arm chosen, relative to the baseline mean, is at most this.
    risk_threshold: float = Field(default=0.0025, ge=0, lt=1)
    # Regression adjustment, report only (docs/analysis.md, "In the pipeline"): extra covariates
    # of every non-quantile metric, after the metric's own pre-period value(s). A metric id of
    # the experiment (its pre-period value per unit), or "attribute:<name>" (also written
    # {attribute: <name>}): an exposure attribute as 0/1 dummies of its segment_top_n most
    # frequent values among the analysed units that day.
    covariates: list[str] = Field(default_factory=list)
    # Post-stratification, report only (GrowthBook's approach; docs/analysis.md): the effect
    # averaged over the levels of this segment attribute, weighted by their share of units. It
    # must be one of ``segments`` (the strata are its segment rows).
    poststratify: str | None = None

    @field_validator("covariates", mode="before")
    @classmethod
    def _attribute_entries(cls, v: object) -> object:
        # `- attribute: platform` is read as "attribute:platform".
        if not isinstance(v, list):
            return v
        out = []
        for x in v:
            if isinstance(x, dict):
                if set(x) != {"attribute"} or not isinstance(x["attribute"], str):
                    raise ValueError(f"an entry is a metric id or {{attribute: <name>}}, got {x}")
                x = f"{ATTRIBUTE_COVARIATE}{x['attribute']}"
            out.append(x)
        return out

    @property
    def covariate_metrics(self) -> list[str]:
        """The metric ids of ``covariates``, in order."""
        return [c for c in self.covariates if not c.startswith(ATTRIBUTE_COVARIATE)]

    @property
    def covariate_attributes(self) -> list[str]:
        """The exposure attributes of ``covariates``, in order."""
        n = len(ATTRIBUTE_COVARIATE)
        return [c[n:] for c in self.covariates if c.startswith(ATTRIBUTE_COVARIATE)]


class Bandit(_Model):
    """A bandit's adaptive allocation (docs/analysis.md, "Bandits"): every ``update_days``
    analysis days the platform computes Thompson-sampling weights from the posterior of
    ``metric`` (weighted by period) and publishes them as a new config version; units keep the
    arm they were first given (the SDK's sticky store), only new units see new weights."""

    # The decision metric the weights follow: one of the experiment's primary metrics, a mean or
    # a proportion (the period weighting is on per-unit means).
    metric: str
    update_days: int = Field(default=1, ge=1)  # the cadence, in analysis days
    # Every arm needs this many analysed units of ``metric`` before the weights move (burn-in).
    min_units_per_arm: int = Field(default=100, ge=1)
    # Every arm keeps at least this share of new units (GrowthBook's 1%), at most 1/arms.
    floor: float = Field(default=0.01, ge=0, le=0.5)


class Experiment(_Model):
    """One experiment, one file ``experiments/<id>.yaml``."""

    id: str
    name: str
    owner: str
    hypothesis: str = ""
    # "bandit": adaptive allocation with the ``bandit`` settings; the variants' weights are the
    # first ones served (docs/analysis.md, "Bandits").
    type: Literal["experiment", "bandit"] = "experiment"
    status: Status = "draft"
    start_date: dt.date
    end_date: dt.date | None = None
    unit: str = "user_id"
    salt: str | None = None
    allocation: float = Field(default=1.0, gt=0, le=1)
    layer: str | None = None
    layer_range: tuple[float, float] | None = None
    targeting: dict[str, list[str]] = Field(default_factory=dict)
    variants: list[Variant]
    shipped_variant: str | None = None
    auto_kill: bool = False
    metrics: ExperimentMetrics = Field(default_factory=ExperimentMetrics)
    overrides: dict[str, str] = Field(default_factory=dict)
    approvals: list[Approval] = Field(default_factory=list)
    analysis: Analysis = Field(default_factory=Analysis)
    bandit: Bandit | None = None

    @field_validator("bandit")
    @classmethod
    def _bandit_settings(cls, v: Bandit | None, info: ValidationInfo) -> Bandit | None:
        kind = info.data.get("type")
        if kind == "experiment" and v is not None:
            raise ValueError("only a bandit has bandit settings; set type: bandit")
        return v

    @field_validator("targeting", mode="before")
    @classmethod
    def _targeting_lists(cls, v: object) -> object:
        # `country: US` is read as `country: [US]`.
        if isinstance(v, dict):
            return {k: (x if isinstance(x, list) else [x]) for k, x in v.items()}
        return v

    @field_validator("variants")
    @classmethod
    def _variants_split_traffic(cls, v: list[Variant]) -> list[Variant]:
        # The SDK maps buckets onto cumulative weights, so these must hold for every loaded experiment.
        if len(v) < 2:
            raise ValueError(f"needs at least two variants, got {len(v)}")
        ids = [x.id for x in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"variant ids must be unique; repeated: {', '.join(dupes)}")
        total = sum(x.weight for x in v)
        if abs(total - 1) > WEIGHT_TOLERANCE:
            raise ValueError(f"weights sum to {total:.10g}, not 1")
        return v

    @field_validator("layer_range")
    @classmethod
    def _layer_range_inside_unit(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 <= v[0] < v[1] <= 1:
            raise ValueError(f"[{v[0]:g}, {v[1]:g}] must satisfy 0 <= lo < hi <= 1")
        return v

    @property
    def hash_salt(self) -> str:
        return self.salt or self.id

    @property
    def is_bandit(self) -> bool:
        return self.type == "bandit"

    @property
    def baseline(self) -> str:
        return self.variants[0].id

    @property
    def variant_ids(self) -> list[str]:
        return [v.id for v in self.variants]

    def metric_ids(self) -> list[str]:
        m = self.metrics
        return [*m.primary, *m.secondary, *(g.metric for g in m.guardrails)]


class Holdout(_Model):
    """One holdout, one file ``holdouts/<id>.yaml``: while running, the units with
    ``bucket(salt, unit)`` in [0, round(10000·share)) get no variant in any experiment of
    ``layers`` (docs/edge-config.md, "Holdouts"); overrides and killed or stopped experiments
    still serve them."""

    id: str
    name: str
    owner: str
    description: str = ""
    status: Status = "draft"
    share: float = Field(gt=0, le=0.2)  # a long holdout costs every experiment in its layers
    layers: list[str] = Field(min_length=1)
    start_date: dt.date
    end_date: dt.date | None = None
    salt: str | None = None
    metrics: ExperimentMetrics = Field(default_factory=ExperimentMetrics)  # for its scorecard
    analysis: Analysis = Field(default_factory=Analysis)  # of its scorecard (general vs holdout)
    approvals: list[Approval] = Field(default_factory=list)

    @property
    def hash_salt(self) -> str:
        return self.salt or self.id

    def as_experiment(self) -> Experiment:
        """The holdout as the analysis sees it: an experiment of two equal groups whose
        exposures the SDK logs under the holdout's id (rule 8b, docs/edge-config.md "Holdouts"):
        ``holdout`` (the baseline: units kept out of every experiment in ``layers``) and
        ``general`` (as many units, served the layers' experiments and everything shipped
        there). Its scorecard is the cumulative effect of those layers against the holdout."""
        return Experiment(
            id=self.id,
            name=self.name,
            owner=self.owner,
            hypothesis=self.description
            or f"Cumulative effect of the experiments in {', '.join(self.layers)}",
            status=self.status,
            start_date=self.start_date,
            end_date=self.end_date,
            variants=[{"id": "holdout", "weight": 0.5}, {"id": "general", "weight": 0.5}],
            metrics=self.metrics,
            approvals=self.approvals,
            analysis=self.analysis,
        )


class EventAgg(_Model):
    """One side of a ratio: an event and how its values are aggregated per user."""

    event: str
    agg: Literal["sum", "count"] = "sum"
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Prior(_Model):
    """An informative normal prior on a metric's relative lift (Bayesian engine): N(mean, sd²).
    A metric without ``prior`` gets GrowthBook's default, a flat (improper) prior."""

    mean: float = 0.0
    sd: float = Field(default=0.3, gt=0)


class Metric(_Model):
    """One metric, one file ``metrics/<id>.yaml``."""

    id: str
    kind: Literal["mean", "proportion", "ratio", "quantile"]
    description: str = ""
    event: str | None = None
    agg: Literal["sum", "count", "any"] | None = None
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)
    numerator: EventAgg | None = None
    denominator: EventAgg | None = None
    # Quantile metrics (docs/analysis.md, "Quantile metrics"), fixed horizon only: the level ν in
    # (0, 1) (0.9 is p90) and what the quantile is of: ``event``, the values of the metric's
    # events (events nested in units, a clustered variance), or ``unit``, each unit's sum of them
    # (one value per unit, 0 for a unit without events). Both required for kind quantile only.
    quantile: float | None = Field(default=None, gt=0, lt=1, validate_default=True)
    level: Literal["event", "unit"] | None = Field(default=None, validate_default=True)
    # Conversion window (docs/analysis.md, "Conversion windows and retention"): only the events in
    # [first exposure + window_start_days, + window_days more) count; "active on day 7" is
    # window_start_days: 7, window_days: 1. Without window_days: every event since first exposure.
    window_days: int | None = Field(default=None, gt=0)
    window_start_days: int = Field(default=0, ge=0)
    # A windowed metric counts a unit only once its whole window has ended by the analysis day's
    # end (the others are "maturing"); true counts them too, with the part of the window seen so
    # far: a mix of short and full windows that understates the metric early on (GrowthBook
    # issue 4353), kept for reproducing old numbers or watching a metric before any unit matures.
    include_maturing: bool = False
    higher_is_better: bool = True
    winsorize: float | None = Field(default=None, gt=0, lt=1)
    prior: Prior | None = None  # Bayesian engine only; None: flat

    @field_validator("window_start_days", "include_maturing")
    @classmethod
    def _needs_a_window(cls, v: object, info: ValidationInfo) -> object:
        # Only given values are checked (defaults are not validated); window_days failed on its
        # own when it is not in info.data.
        if v and "window_days" in info.data and info.data["window_days"] is None:
            what = {
                "window_start_days": "the window starts window_start_days after first exposure "
                "and lasts window_days",
                "include_maturing": "a metric without a window counts every unit at once",
            }[info.field_name]
            raise ValueError(f"{info.field_name} needs window_days: {what}")
        return v

    @field_validator("quantile", "level")
    @classmethod
    def _quantile_fields(cls, v: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        if kind is None:  # kind failed on its own
            return v
        if kind == "quantile" and v is None:
            what = {
                "quantile": "its level in (0, 1), e.g. quantile: 0.9 for p90",
                "level": "level: event (the quantile of event values) or level: unit (of each "
                "unit's sum of them)",
            }[info.field_name]
            raise ValueError(f"a quantile metric needs {what}")
        if kind != "quantile" and v is not None:
            raise ValueError(f"only a quantile metric has a {info.field_name}, this is a {kind}")
        return v

    @field_validator("agg", "winsorize", "prior")
    @classmethod
    def _not_for_quantiles(cls, v: object, info: ValidationInfo) -> object:
        # Only given values are checked (defaults are not validated).
        if info.data.get("kind") != "quantile" or v is None:
            return v
        if info.field_name == "agg" and v == "sum":
            return v
        raise ValueError(
            {
                "agg": "a quantile metric reads its events' values (level: event) or their sum "
                f"per unit (level: unit); agg must be sum or absent, got {v}",
                "winsorize": "a quantile metric is not winsorized: a quantile is not moved by "
                "outliers",
                "prior": "a quantile metric has no Bayesian posterior (fixed horizon only), so "
                "no prior",
            }[info.field_name]
        )

    @property
    def fixed_horizon_only(self) -> bool:
        """Whether the metric has no sequential (always-valid) test: a quantile metric."""
        return self.kind == "quantile"

    @property
    def maturity_days(self) -> int | None:
        """Days after first exposure by which a unit's window has ended and the unit counts; None
        when every analysed unit counts at once (no window, or ``include_maturing``)."""
        if self.window_days is None or self.include_maturing:
            return None
        return self.window_start_days + self.window_days

    def events(self) -> set[str]:
        """The metric_events.event names this metric reads."""
        if self.kind == "ratio":
            return {p.event for p in (self.numerator, self.denominator) if p is not None}
        return {self.event} if self.event else set()
