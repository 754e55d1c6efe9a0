"""Every Delta table of the lake, declared once: tier, name, Arrow schema, partition columns."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ab_pipelines.events.schema import PARSED_SCHEMA

__all__ = ["PROVENANCE", "QUANTILE_FIELDS", "STAT_FIELDS", "TABLES", "TableSpec", "table_spec"]


@dataclass(frozen=True)
class TableSpec:
    """A table's identity and shape. ``keys`` name a row's identity (used by MERGE)."""

    tier: str
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    description: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.tier}.{self.name}"

    @property
    def data_schema(self) -> pa.Schema:
        """The columns stored in data files (Delta keeps partition values in the log)."""
        return pa.schema([f for f in self.schema if f.name not in self.partition_by])


def _cols(*names: str) -> list[pa.Field]:
    return [PARSED_SCHEMA.field(n) for n in names]


_KAFKA = ("kafka_partition", "kafka_offset", "kafka_timestamp", "kafka_key")
_LINEAGE = ("source_file", "source_line")

BRONZE_EXPOSURES = TableSpec(
    "bronze",
    "exposures",
    pa.schema(
        _cols(
            "event_id",
            "user_id",
            "experiment_id",
            "variant",
            "ts",
            "config_version",
            "source",
            "attributes",
            "extra",
            *_KAFKA,
            *_LINEAGE,
            "arrival_date",
        )
    ),
    partition_by=("arrival_date",),
    keys=("event_id",),
    description="Exposure events landed once from the raw dumps; partitioned by arrival day.",
)
BRONZE_METRIC_EVENTS = TableSpec(
    "bronze",
    "metric_events",
    pa.schema(
        _cols(
            "event_id",
            "user_id",
            "event",
            "value",
            "ts",
            "properties",
            "extra",
            *_KAFKA,
            *_LINEAGE,
            "arrival_date",
        )
    ),
    partition_by=("arrival_date",),
    keys=("event_id",),
    description="Metric events landed once from the raw dumps; partitioned by arrival day.",
)
BRONZE_QUARANTINE = TableSpec(
    "bronze",
    "quarantine",
    pa.schema(
        _cols(
            "source_file",
            "source_line",
            "topic",
            "reason",
            "detail",
            "raw",
            "raw_bytes",
            "arrival_date",
        )
    ),
    partition_by=("arrival_date",),
    keys=("source_file", "source_line"),
    description="Every line that could not be landed, with its file, line, raw text and reason code.",
)
OPS_LANDED_FILES = TableSpec(
    "ops",
    "landed_files",
    pa.schema(
        [
            ("source_file", pa.string()),
            ("topic", pa.string()),
            ("bytes", pa.int64()),
            ("read", pa.int64()),
            ("landed", pa.int64()),
            ("quarantined", pa.int64()),
            ("duplicates", pa.int64()),
            ("arrival_date", pa.date32()),
        ]
    ),
    partition_by=("arrival_date",),
    keys=("source_file",),
    description="One row per landed dump file: read = landed + quarantined + duplicates.",
)

OPS_DQ_RESULTS = TableSpec(
    "ops",
    "dq_results",
    pa.schema(
        [
            ("table", pa.string()),
            ("check", pa.string()),
            ("passed", pa.bool_()),
            ("observed", pa.string()),
            ("sample", pa.string()),
            ("description", pa.string()),
            ("checked_at", pa.timestamp("us", tz="UTC")),
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("day", "table", "check"),
    description="Every data-quality check result: day, table, check, passed, observed value, sample rows.",
)
SILVER_EXPOSURE_COUNTS = TableSpec(
    "silver",
    "exposure_counts",
    pa.schema(
        [
            ("event_date", pa.date32()),
            ("experiment_id", pa.string()),
            ("variant", pa.string()),
            ("exposures", pa.int64()),
            ("units", pa.int64()),
            ("arrival_date", pa.date32()),
        ]
    ),
    partition_by=("arrival_date",),
    keys=("event_date", "experiment_id", "variant"),
    description="Exposure events and distinct users per event day, experiment and variant, by arrival day.",
)

_TS = pa.timestamp("us", tz="UTC")
OPS_KILLS = TableSpec(
    "ops",
    "kills",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("killed_at", _TS),
            ("by", pa.string()),
            ("reason", pa.string()),
        ]
    ),
    keys=("experiment_id",),
    description="Kill switch: who killed which experiment, when and why; publishing applies it on top of the registry.",
)
OPS_AUDIT_LOG = TableSpec(
    "ops",
    "audit_log",
    pa.schema(
        [
            ("at", _TS),
            ("actor", pa.string()),
            ("action", pa.string()),
            ("experiment_id", pa.string()),
            ("detail", pa.string()),
        ]
    ),
    description="Append-only audit trail of config-plane actions: publish, kill.",
)

OPS_ALERTS = TableSpec(
    "ops",
    "alerts",
    pa.schema(
        [
            ("alert_id", pa.string()),  # kind:experiment_id:subject:opened_day, one per episode
            (
                "kind",
                pa.string(),
            ),  # guardrail_breach | srm | crossovers | dq_failed | no_exposures | run_failed
            ("severity", pa.string()),  # critical | warning
            ("status", pa.string()),  # open | closed
            ("experiment_id", pa.string()),  # "" when not about one experiment
            ("subject", pa.string()),  # the metric, check, table or run
            ("opened_day", pa.date32()),
            ("last_seen_day", pa.date32()),
            ("closed_day", pa.date32()),
            ("opened_at", _TS),
            ("closed_at", _TS),
            ("effect", pa.float64()),
            ("bound", pa.float64()),
            ("margin", pa.float64()),
            ("message", pa.string()),
            ("detail", pa.string()),  # JSON
        ]
    ),
    keys=("alert_id",),
    description="Every alert, one row per episode (a breach that lasts three days is one alert): "
    "open while its condition holds, closed when it ends or the experiment stops.",
)
OPS_NOTIFICATIONS = TableSpec(
    "ops",
    "notifications",
    pa.schema(
        [
            ("notification_id", pa.string()),  # alert_id:event:notifier
            ("alert_id", pa.string()),
            ("event", pa.string()),  # opened | closed
            ("notifier", pa.string()),  # log | file | webhook
            ("status", pa.string()),  # pending | delivered
            ("attempts", pa.int64()),
            ("last_error", pa.string()),
            ("payload", pa.string()),  # the JSON body sent
            ("created_at", _TS),
            ("updated_at", _TS),
        ]
    ),
    keys=("notification_id",),
    description="The notification outbox: one row per alert event and notifier; pending ones are "
    "retried until delivered, so a notifier that is down loses nothing.",
)

# What produced a gold row (ab_pipelines.analysis.state): the sha of the experiment's registry
# content it was computed with, and the edge config version serving at the end of its day. Null
# on rows written before these columns existed (the lake adds missing columns on write and read).
PROVENANCE = (("registry_sha", pa.string()), ("config_version", pa.int64()))

# The sufficient statistics of one (metric, variant): n and the RatioMoments sums.
STAT_FIELDS = (
    "n",
    "num_sum",
    "num_sum_sq",
    "den_sum",
    "den_sum_sq",
    "num_den_sum",
    "pre_num_sum",
    "pre_num_sum_sq",
    "pre_den_sum",
    "pre_den_sum_sq",
    "pre_num_pre_den_sum",
    "num_pre_num_sum",
    "num_pre_den_sum",
    "den_pre_num_sum",
    "den_pre_den_sum",
)
# A quantile metric's statistics (ab_pipelines.stats.QuantileMoments): column -> field. Null on
# the rows of other metrics; the last six (the per-unit sums of events nested in units) are null
# for a quantile of per-unit values (level unit) too.
QUANTILE_FIELDS = {
    "q_level": "q",  # ν, e.g. 0.9 for p90
    "q_n": "n",  # values in the arm: events (level event) or units (level unit)
    "q_n_star": "n_star",
    "q_value": "quantile",  # the arm's sample quantile; null without values
    "q_lower": "lower",
    "q_upper": "upper",
    "q_n_units": "n_units",
    "q_below_sum": "below_sum",
    "q_below_sum_sq": "below_sum_sq",
    "q_events_sum": "events_sum",
    "q_events_sum_sq": "events_sum_sq",
    "q_below_events_sum": "below_events_sum",
}
_INT_QUANTILE_FIELDS = ("q_n", "q_n_star", "q_n_units")

GOLD_SUFFICIENT_STATS = TableSpec(
    "gold",
    "sufficient_stats",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("metric", pa.string()),
            ("variant", pa.string()),
            ("segment", pa.string()),  # "all", or "<attribute>=<value>" (exploratory)
            *((f, pa.int64() if f == "n" else pa.float64()) for f in STAT_FIELDS),
            # Analysed units left out of n and the sums because the metric's window (window_days
            # after window_start_days) had not ended by the day's end; 0 for a metric without a
            # window or with include_maturing. n + maturing = the analysed units. Null on rows
            # written before the column existed.
            ("maturing", pa.int64()),
            # A quantile metric: its QuantileMoments (QUANTILE_FIELDS) beside the companion
            # moments above (the mean of the same values). Null on other metrics' rows.
            *(
                (f, pa.int64() if f in _INT_QUANTILE_FIELDS else pa.float64())
                for f in QUANTILE_FIELDS
            ),
            *PROVENANCE,
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "metric", "variant", "segment"),
    description="Per analysis day, experiment, metric, variant and segment: the sufficient statistics "
    "(RatioMoments fields; a mean metric has den = 1) of the units that count (a windowed metric: "
    "those whose window has ended), cumulative from the start date, the units still maturing, "
    "a quantile metric's QuantileMoments (q_* columns), and the registry sha and config version "
    "they were computed under.",
)


def _estimate(prefix: str) -> list[tuple[str, pa.DataType]]:
    return [(f"{prefix}_{k}", pa.float64()) for k in ("effect", "ci_low", "ci_high", "p_value")]


GOLD_EXPERIMENT_RESULTS = TableSpec(
    "gold",
    "experiment_results",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("metric", pa.string()),
            ("role", pa.string()),  # primary | secondary | guardrail
            ("variant", pa.string()),  # a non-baseline variant
            ("baseline", pa.string()),
            ("segment", pa.string()),
            ("exploratory", pa.bool_()),  # segment rows: shown, never decide
            ("n_baseline", pa.int64()),
            ("n_variant", pa.int64()),
            # Units left out because the metric's window had not ended (gold.sufficient_stats'
            # maturing); 0 without a window, null on rows written before the column existed.
            ("maturing_baseline", pa.int64()),
            ("maturing_variant", pa.int64()),
            ("mean_baseline", pa.float64()),  # a quantile metric: the arm's sample quantile
            ("mean_variant", pa.float64()),
            # The metric as computed: its kind (mean | proportion | ratio | quantile) and, for a
            # quantile, its level ν and what it is of (event | unit). A quantile metric is fixed
            # horizon only: its seq_* columns are null. Null on rows written before they existed.
            ("metric_kind", pa.string()),
            ("metric_quantile", pa.float64()),
            ("metric_level", pa.string()),
            *_estimate("abs"),  # fixed-horizon Welch, raw
            *_estimate("rel"),
            ("cuped_theta", pa.float64()),
            ("cuped_variance_reduction", pa.float64()),
            *_estimate("cuped_abs"),  # fixed-horizon, CUPED (null without pre-period data)
            *_estimate("cuped_rel"),
            # Regression adjustment on several covariates (report only: decisions read CUPED),
            # fixed horizon, from gold.regression_stats; null without analysis.covariates.
            *_estimate("adj_abs"),
            *_estimate("adj_rel"),
            ("adj_variance_reduction", pa.float64()),  # 1 - Var(adjusted)/Var(raw), relative
            ("adj_covariates", pa.list_(pa.string())),  # those the guard kept (θ != 0)
            # Post-stratified on analysis.poststratify (report only, segment "all", mean and
            # proportion metrics): the relative lift averaged over that attribute's levels.
            ("ps_attribute", pa.string()),
            *_estimate("ps_rel"),
            *_estimate("seq_abs"),  # always-valid, on the CUPED estimate where CUPED applies
            *_estimate("seq_rel"),
            # The e-process behind seq_rel's always-valid p (p = min(1, 1/e)); the scorecard runs
            # e-BH over every day's values of an experiment's metrics and variants (null: quantile
            # metrics, and rows written before the column existed).
            ("e_value", pa.float64()),
            # Bayesian engine (GrowthBook's), on the relative lift (CUPED where it applies),
            # always computed; the decision reads them when analysis.engine is bayesian.
            ("bayes_effect", pa.float64()),  # posterior mean
            ("bayes_ci_low", pa.float64()),  # credible interval (1 - alpha)
            ("bayes_ci_high", pa.float64()),
            ("bayes_chance_to_win", pa.float64()),  # P(variant better), metric direction
            ("bayes_risk_control", pa.float64()),  # expected loss keeping the baseline
            ("bayes_risk_variant", pa.float64()),  # expected loss shipping the variant
            ("bayes_call", pa.string()),  # ship | rollback | keep_running (the engine's rule)
            ("p_value_adjusted", pa.float64()),  # Holm/BH over primary+secondary x variants
            ("significant", pa.bool_()),  # what the decision reads
            ("guardrail_margin", pa.float64()),
            ("guardrail_bound", pa.float64()),
            ("guardrail_breached", pa.bool_()),
            ("decision", pa.string()),  # the experiment's decision that day (same on every row)
            *PROVENANCE,
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "metric", "variant", "segment"),
    description="Per analysis day, experiment, metric, non-baseline variant and segment: raw, CUPED and "
    "always-valid estimates, the adjusted p-value, guardrail fields and the experiment's decision, "
    "with the registry sha and config version they were computed under.",
)
GOLD_SRM = TableSpec(
    "gold",
    "srm",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("segment", pa.string()),
            ("variant", pa.string()),
            ("units", pa.int64()),
            ("weight", pa.float64()),
            ("expected", pa.float64()),
            ("statistic", pa.float64()),
            ("p_value", pa.float64()),
            ("flagged", pa.bool_()),
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "segment", "variant"),
    description="Sample-ratio-mismatch test per analysis day and experiment: analysed units per "
    "variant against the configured weights (Pearson chi-square, flagged at p < 0.001).",
)
GOLD_HEALTH = TableSpec(
    "gold",
    "health",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("check", pa.string()),  # crossovers | metric_without_data | pre_period_imbalance
            ("subject", pa.string()),  # the metric, or "" for experiment-wide checks
            ("value", pa.float64()),
            ("p_value", pa.float64()),
            ("flagged", pa.bool_()),
            ("detail", pa.string()),
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "check", "subject"),
    description="Per analysis day and experiment: crossovers, metrics without data and the "
    "pre-exposure imbalance of each metric's CUPED covariate.",
)

GOLD_HETEROGENEITY = TableSpec(
    "gold",
    "heterogeneity",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("metric", pa.string()),
            ("variant", pa.string()),  # the treatment arm compared with the baseline
            ("attribute", pa.string()),  # the segment attribute, e.g. "platform"
            ("levels", pa.int64()),  # levels whose effect could be computed (Q's df + 1)
            ("q", pa.float64()),  # Cochran's Q
            ("p_value", pa.float64()),
            ("p_adjusted", pa.float64()),  # Benjamini-Hochberg across the experiment's tests
            ("i2", pa.float64()),
            ("pooled_effect", pa.float64()),
            ("flagged", pa.bool_()),  # p_adjusted <= the experiment's alpha
            ("level_names", pa.list_(pa.string())),  # e.g. ["platform=android", ...]
            ("level_effects", pa.list_(pa.float64())),  # the relative lift in each level
            ("level_z", pa.list_(pa.float64())),  # each level against the others
            ("drivers", pa.list_(pa.string())),  # the levels that drive a flagged test
            *PROVENANCE,
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "metric", "variant", "attribute"),
    description="Differential impact per analysis day: does a decision metric's effect differ across "
    "the levels of a segment attribute (Cochran's Q on the segment rows, BH across the experiment's "
    "attributes, metrics and variants; ab_pipelines.stats.heterogeneity).",
)

GOLD_INTERACTIONS = TableSpec(
    "gold",
    "interactions",
    pa.schema(
        [
            ("experiment_a", pa.string()),  # the pair, a < b by id
            ("experiment_b", pa.string()),
            ("metric", pa.string()),  # a decision metric of a or b
            ("values_from", pa.string()),  # the experiment whose per-unit values the cells sum
            ("variants_a", pa.list_(pa.string())),  # a's arms, the baseline first
            ("variants_b", pa.list_(pa.string())),
            # the k x m cells, row-major (a's variant, then b's): units and the metric's value
            ("cell_a", pa.list_(pa.string())),
            ("cell_b", pa.list_(pa.string())),
            ("cell_n", pa.list_(pa.int64())),
            ("cell_mean", pa.list_(pa.float64())),
            ("units", pa.int64()),  # units analysed in both experiments (with a value)
            ("statistic", pa.float64()),  # the Wald chi-square of the A x B terms
            ("df", pa.int64()),  # (k - 1)(m - 1)
            ("p_value", pa.float64()),
            (
                "p_adjusted",
                pa.float64(),
            ),  # Benjamini-Hochberg across every pair and metric of the day
            ("flagged", pa.bool_()),  # p_adjusted <= the scan's false discovery rate
            ("driver_a", pa.string()),  # the contrast with the largest |z|: a's arm ...
            ("driver_b", pa.string()),  # ... and b's arm
            (
                "interaction",
                pa.float64(),
            ),  # its contrast: a's effect in driver_b minus in b's baseline
            ("interaction_se", pa.float64()),
            ("effect_in_baseline", pa.float64()),  # a's effect (driver_a) in b's baseline
            ("effect_in_driver", pa.float64()),  # a's effect (driver_a) in driver_b
            ("traffic_p_value", pa.float64()),  # chi-square independence of cell_n
            ("registry_sha_a", pa.string()),
            ("registry_sha_b", pa.string()),
            ("config_version", pa.int64()),
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_a", "experiment_b", "metric"),
    description="Interactions between concurrent experiments per analysis day: for every pair that "
    "shares units and every decision metric of either, the Wald test of the A x B terms on the "
    "per-cell sufficient statistics (summed beside each experiment's own, in "
    "dbt_like_sql/sufficient_stats.sql), BH "
    "across every pair and metric of the day (ab_pipelines.analysis.interactions).",
)

GOLD_REGRESSION_STATS = TableSpec(
    "gold",
    "regression_stats",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("metric", pa.string()),
            ("variant", pa.string()),
            ("segment", pa.string()),  # "all" (the only segment computed)
            # Z's columns after the responses, in order: the metric's own pre-period value(s)
            # (pre_<metric>, or pre_<metric>_num and pre_<metric>_den for a ratio), then
            # analysis.covariates: other metrics' pre-period values and "<attribute>=<value>" dummies
            ("covariates", pa.list_(pa.string())),
            ("responses", pa.int64()),  # 1: Z = [y, x...]; 2 (a ratio): Z = [num, den, x...]
            ("n", pa.int64()),  # units that count (mature)
            ("sums", pa.list_(pa.float64())),  # Σ Z, p = responses + len(covariates) values
            ("cross", pa.list_(pa.float64())),  # Z'Z, p × p row-major
            *PROVENANCE,
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "metric", "variant", "segment"),
    description="Regression adjustment's sufficient statistics per analysis day, experiment (those "
    "with analysis.covariates), non-quantile metric and variant: n, Σ Z and Z'Z of Z = the "
    "metric's response(s), its own pre-period value(s) and the experiment's covariates "
    "(dbt_like_sql/regression_stats.sql; ab_pipelines.stats.RegressionMoments).",
)

GOLD_BANDIT_WEIGHTS = TableSpec(
    "gold",
    "bandit_weights",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("metric", pa.string()),  # bandit.metric, the decision metric the weights follow
            ("variant", pa.string()),
            ("n", pa.int64()),  # analysed units of the arm that count for the metric
            ("posterior_mean", pa.float64()),  # period-weighted mean of the metric
            ("posterior_sd", pa.float64()),
            ("best_probability", pa.float64()),  # P(the arm is the best), before the floor
            ("live_weight", pa.float64()),  # the weight serving during the day
            ("weight", pa.float64()),  # the weight to publish next (live_weight if not updated)
            ("updated", pa.bool_()),
            ("reason", pa.string()),  # why (not) updated: burn-in, cadence, ended, ...
            ("periods", pa.int64()),  # allocation periods weighted
            ("seed", pa.int64()),  # of the Monte Carlo draws
            *PROVENANCE,
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id", "variant"),
    description="A bandit's Thompson-sampling weights per analysis day and arm: the posterior of "
    "its decision metric weighted by allocation period, P(best), the weight serving that day "
    "and the weight to publish next (ab_pipelines.analysis.bandits; the publish step serves it).",
)

OPS_BANDIT_ALLOCATIONS = TableSpec(
    "ops",
    "bandit_allocations",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("config_version", pa.int64()),  # the version that started serving these weights
            ("published_at", _TS),  # the start of the allocation period
            ("variants", pa.list_(pa.string())),
            ("weights", pa.list_(pa.float64())),
            ("source", pa.string()),  # "registry" (the YAML's) or "bandit <day>" (gold's)
        ]
    ),
    keys=("experiment_id", "config_version"),
    description="Append-only: every config version that changed a bandit's weights, with when it "
    "was published: the allocation periods the bandit's analysis weights by (config publish).",
)

OPS_EXPERIMENT_DAYS = TableSpec(
    "ops",
    "experiment_days",
    pa.schema(
        [
            ("experiment_id", pa.string()),
            ("status", pa.string()),  # killed (by the day's end) | the registry's status
            ("registry_status", pa.string()),  # draft | in_review | approved | running | stopped
            ("analysed", pa.bool_()),  # running or stopped in the registry, and started
            ("ended", pa.bool_()),  # stopped, killed, or the day is on/after end_date
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
            ("window_start", _TS),  # first exposures in [window_start, min(window_end, kill_cut))
            ("window_end", _TS),  # min(day + 1, end_date + 1)
            ("kill_cut", _TS),  # the kill time when it falls inside the window
            ("killed_at", _TS),  # who/when/why of a kill in effect by the day's end
            ("killed_by", pa.string()),
            ("kill_reason", pa.string()),
            *PROVENANCE,
            ("config_sha", pa.string()),  # the content_sha of that config version's payload
            ("variants", pa.list_(pa.string())),  # analysed, in order: the first is the baseline
            ("weights", pa.list_(pa.float64())),
            ("day", pa.date32()),
        ]
    ),
    partition_by=("day",),
    keys=("experiment_id",),
    description="One row per analysis day and experiment (started by then): status with who/when/why "
    "of a kill, the analysis window, the registry sha and config version in force, the variants and "
    "weights analysed (ab_pipelines.analysis.state).",
)

TABLES: dict[str, TableSpec] = {
    t.qualified: t
    for t in (
        BRONZE_EXPOSURES,
        BRONZE_METRIC_EVENTS,
        BRONZE_QUARANTINE,
        OPS_LANDED_FILES,
        OPS_DQ_RESULTS,
        SILVER_EXPOSURE_COUNTS,
        OPS_KILLS,
        OPS_AUDIT_LOG,
        OPS_ALERTS,
        OPS_NOTIFICATIONS,
        GOLD_SUFFICIENT_STATS,
        GOLD_EXPERIMENT_RESULTS,
        GOLD_SRM,
        GOLD_HEALTH,
        GOLD_HETEROGENEITY,
        GOLD_INTERACTIONS,
        GOLD_REGRESSION_STATS,
        GOLD_BANDIT_WEIGHTS,
        OPS_BANDIT_ALLOCATIONS,
        OPS_EXPERIMENT_DAYS,
    )
}


def table_spec(qualified: str) -> TableSpec:
    try:
        return TABLES[qualified]
    except KeyError:
        raise KeyError(f"unknown table {qualified!r}; known: {sorted(TABLES)}") from None
