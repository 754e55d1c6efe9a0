-- Per segment, quantile metric and variant with values: the QuantileMoments fields
-- (ab_pipelines.stats.quantile.quantile_summaries is this model in numpy; gold.sufficient_stats
-- carries them as its q_* columns, see sufficient_stats.sql).
--
--   n                 the values in the arm (events, or units for level unit);
--   n_star            the largest of N_STAR_GRID (100 * 2^k) below n, else 100 (n_star_for);
--   quantile          the arm's ν-th sample quantile Q̂;
--   lower, upper      the sample quantiles at the levels of n_star's bounds (bound_levels);
--   n_units ... below_events_sum (level event only): over the arm's units with >= 1 value, the
--                     sums of S_i = the unit's values <= Q̂ and N_i = its values: Σ S_i, Σ S_i²,
--                     Σ N_i, Σ N_i², Σ S_i·N_i.
--
-- Exact quantiles, the same on both engines: the sample quantile at level p is the inverted-CDF
-- one (numpy's method="inverted_cdf"), the smallest value x with at least ceil(n·p) values <= x
-- (n·p in DOUBLE arithmetic, as numpy computes it), read from the arm's distinct values and their
-- running count. Not percentile_approx: Sail runs it as DataFusion's t-digest
-- approx_percentile_cont, which takes one level (no array), interpolates between values and does
-- not give JVM Spark's Greenwald-Khanna answers; an exact rank has no rank error on either engine.
-- The cost is a sort of each arm's distinct values (docs/analysis.md, "Quantile metrics").
--
-- Var quantile_metrics: [{id, q, level, side, mature_sides, bounds: [{n_star, lower, upper}]}]
-- (bounds: bound_levels(q, N_STAR_GRID), computed in Python so both sides use the same doubles).
-- Var segments: a unit's values count once in "all" and once in each of its segment labels.
{% set metrics = var('quantile_metrics') %}
{% set clustered = metrics | selectattr('level', 'equalto', 'event') | map(attribute='id') | list %}
{% set grid = metrics[0].bounds | map(attribute='n_star') | list if metrics else [] %}
{% if metrics %}
WITH labelled AS (
    SELECT 'all' AS segment, metric, unit, variant, vals
    FROM {{ ref('quantile_values') }}
    {% if var('segments') %}
    UNION ALL
    SELECT s.segment, v.metric, v.unit, v.variant, v.vals
    FROM {{ ref('quantile_values') }} AS v
    JOIN {{ ref('unit_segments') }} AS s
      ON s.unit = v.unit AND s.segment <> 'all'
    {% endif %}
),
-- Each arm's distinct values, how often each occurs, and how many values lie at or below it.
value_counts AS (
    SELECT l.segment, l.metric, l.variant, t.value, COUNT(*) AS cnt
    FROM labelled AS l
    LATERAL VIEW explode(l.vals) t AS value
    GROUP BY l.segment, l.metric, l.variant, t.value
),
cumulative AS (
    SELECT
        segment,
        metric,
        variant,
        value,
        SUM(cnt) OVER (
            PARTITION BY segment, metric, variant ORDER BY value
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS at_or_below,
        SUM(cnt) OVER (PARTITION BY segment, metric, variant) AS n
    FROM value_counts
),
bounds AS (
    SELECT * FROM VALUES
    {%- for m in metrics %}{% set outer = loop %}{% for b in m.bounds %}
        ({{ m.id | sql }}, CAST({{ m.q | string | sql }} AS DOUBLE), {{ b.n_star | sql }}, CAST({{ b.lower | string | sql }} AS DOUBLE), CAST({{ b.upper | string | sql }} AS DOUBLE)){% if not (outer.last and loop.last) %},{% endif %}
    {%- endfor %}{% endfor %}
    AS t(metric, q, n_star, lower_level, upper_level)
),
-- The ranks of Q̂, L and U: ceil(n·p), at least 1 (numpy's inverted_cdf index + 1).
ranked AS (
    SELECT
        c.segment,
        c.metric,
        c.variant,
        c.value,
        c.at_or_below,
        c.n,
        b.n_star,
        GREATEST(CEIL(c.n * b.q), 1) AS quantile_rank,
        GREATEST(CEIL(c.n * b.lower_level), 1) AS lower_rank,
        GREATEST(CEIL(c.n * b.upper_level), 1) AS upper_rank
    FROM cumulative AS c
    JOIN bounds AS b
      ON b.metric = c.metric
     AND b.n_star = CASE
        {%- for n_star in grid | reverse %}{% if not loop.last %} WHEN c.n > {{ n_star | sql }} THEN {{ n_star | sql }}{% endif %}{% endfor %}
        ELSE {{ grid[0] | sql }} END
),
arms AS (
    SELECT
        segment,
        metric,
        variant,
        MIN(n) AS n,
        MIN(n_star) AS n_star,
        MIN(CASE WHEN at_or_below >= quantile_rank THEN value END) AS quantile,
        MIN(CASE WHEN at_or_below >= lower_rank THEN value END) AS lower,
        MIN(CASE WHEN at_or_below >= upper_rank THEN value END) AS upper
    FROM ranked
    GROUP BY segment, metric, variant
),
-- Event level: per unit with values, N_i and S_i (its values <= its arm's Q̂), from the unit's
-- array (a pass over the units, not over the events again).
per_unit AS (
    SELECT
        l.segment,
        l.metric,
        l.variant,
        CAST(SIZE(l.vals) AS DOUBLE) AS n_events,
        CAST(SIZE(FILTER(l.vals, x -> x <= a.quantile)) AS DOUBLE) AS n_below
    FROM labelled AS l
    JOIN arms AS a
      ON a.segment = l.segment AND a.metric = l.metric AND a.variant = l.variant
    WHERE SIZE(l.vals) > 0
      {% if clustered %}AND l.metric IN ({{ clustered | sql }}){% else %}AND FALSE{% endif %}
),
clusters AS (
    SELECT
        segment,
        metric,
        variant,
        COUNT(*) AS n_units,
        SUM(n_below) AS below_sum,
        SUM(n_below * n_below) AS below_sum_sq,
        SUM(n_events) AS events_sum,
        SUM(n_events * n_events) AS events_sum_sq,
        SUM(n_below * n_events) AS below_events_sum
    FROM per_unit
    GROUP BY segment, metric, variant
)
SELECT
    a.segment,
    a.metric,
    a.variant,
    a.n,
    a.n_star,
    a.quantile,
    a.lower,
    a.upper,
    c.n_units,
    c.below_sum,
    c.below_sum_sq,
    c.events_sum,
    c.events_sum_sq,
    c.below_events_sum
FROM arms AS a
LEFT JOIN clusters AS c
  ON c.segment = a.segment AND c.metric = a.metric AND c.variant = a.variant
{% else %}
SELECT
    CAST(NULL AS STRING) AS segment,
    CAST(NULL AS STRING) AS metric,
    CAST(NULL AS STRING) AS variant,
    CAST(NULL AS BIGINT) AS n,
    CAST(NULL AS INT) AS n_star,
    CAST(NULL AS DOUBLE) AS quantile,
    CAST(NULL AS DOUBLE) AS lower,
    CAST(NULL AS DOUBLE) AS upper,
    CAST(NULL AS BIGINT) AS n_units,
    CAST(NULL AS DOUBLE) AS below_sum,
    CAST(NULL AS DOUBLE) AS below_sum_sq,
    CAST(NULL AS DOUBLE) AS events_sum,
    CAST(NULL AS DOUBLE) AS events_sum_sq,
    CAST(NULL AS DOUBLE) AS below_events_sum
FROM {{ ref('quantile_values') }}
WHERE FALSE
{% endif %}
