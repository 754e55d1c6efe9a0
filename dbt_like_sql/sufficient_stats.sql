-- Sufficient statistics per segment, metric and variant (the RatioMoments fields, the columns of
-- gold.sufficient_stats): n analysed units and the sums, sums of squares and cross products of
-- num, den and their pre-period twins. DOUBLE arithmetic throughout: Spark's ANSI mode fails on
-- integer overflow.
--
-- Only mature units are counted in n and the sums (metric_values' `mature`); `maturing` counts
-- the analysed units left out because the metric's window had not ended by D + 1 day (0 for a
-- metric without a window or with include_maturing). n + maturing = the analysed units.
--
-- Complete: one row for every segment present ("all" always; a label when it has units), every
-- metric of the experiment (var metric_ids) and every variant (var variants: the configured ones,
-- plus any other variant an analysed unit has); n = 0 and sums 0.0 where there are no units (or
-- only maturing ones).
-- Ordered by segment ("all" first), metric, variant.
{% macro sums() -%}
        v.metric,
        v.variant,
        COUNT(CASE WHEN v.mature THEN 1 END) AS n,
        COUNT(CASE WHEN NOT v.mature THEN 1 END) AS maturing,
        SUM(v.num) AS num_sum,
        SUM(v.num * v.num) AS num_sum_sq,
        SUM(v.den) AS den_sum,
        SUM(v.den * v.den) AS den_sum_sq,
        SUM(v.num * v.den) AS num_den_sum,
        SUM(v.pre_num) AS pre_num_sum,
        SUM(v.pre_num * v.pre_num) AS pre_num_sum_sq,
        SUM(v.pre_den) AS pre_den_sum,
        SUM(v.pre_den * v.pre_den) AS pre_den_sum_sq,
        SUM(v.pre_num * v.pre_den) AS pre_num_pre_den_sum,
        SUM(v.num * v.pre_num) AS num_pre_num_sum,
        SUM(v.num * v.pre_den) AS num_pre_den_sum,
        SUM(v.den * v.pre_num) AS den_pre_num_sum,
        SUM(v.den * v.pre_den) AS den_pre_den_sum
{%- endmacro %}
-- A maturing unit's values are zeroed here, so one pass gives both: the sums are those of the
-- mature units (adding 0.0 changes no sum) and the unit still counts in `maturing`.
-- Segment "all" is every analysed unit: summed straight from metric_values. Only the segment
-- labels need the join to unit_segments (10 million unit-metric rows at 20 million events: the
-- join cost more than the sums).
WITH counted AS (
    SELECT
        metric,
        unit,
        variant,
        mature,
        CASE WHEN mature THEN num ELSE 0D END AS num,
        CASE WHEN mature THEN den ELSE 0D END AS den,
        CASE WHEN mature THEN pre_num ELSE 0D END AS pre_num,
        CASE WHEN mature THEN pre_den ELSE 0D END AS pre_den
    FROM {{ ref('metric_values') }}
),
sums AS (
    SELECT 'all' AS segment, {{ sums() }}
    FROM counted AS v
    GROUP BY v.metric, v.variant
    {% if var('segments') %}
    UNION ALL
    SELECT s.segment, {{ sums() }}
    FROM counted AS v
    JOIN {{ ref('unit_segments') }} AS s
      ON s.unit = v.unit AND s.segment <> 'all'
    GROUP BY s.segment, v.metric, v.variant
    {% endif %}
),
segments AS (
    SELECT 'all' AS segment
    UNION
    SELECT segment FROM {{ ref('unit_segments') }}
),
metrics AS (
    {% for m in var('metric_ids') %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT {{ m | sql }} AS metric
    {% else %}
    SELECT CAST(NULL AS STRING) AS metric WHERE FALSE
    {% endfor %}
),
variants AS (
    {% for v in var('variants') %}
    SELECT {{ v | sql }} AS variant
    UNION
    {% endfor %}
    SELECT variant FROM {{ ref('unit_segments') }}
),
grid AS (
    SELECT segment, metric, variant
    FROM segments CROSS JOIN metrics CROSS JOIN variants
)
SELECT
    g.segment,
    g.metric,
    g.variant,
    COALESCE(s.n, 0) AS n,
    COALESCE(s.maturing, 0) AS maturing,
    COALESCE(s.num_sum, 0D) AS num_sum,
    COALESCE(s.num_sum_sq, 0D) AS num_sum_sq,
    COALESCE(s.den_sum, 0D) AS den_sum,
    COALESCE(s.den_sum_sq, 0D) AS den_sum_sq,
    COALESCE(s.num_den_sum, 0D) AS num_den_sum,
    COALESCE(s.pre_num_sum, 0D) AS pre_num_sum,
    COALESCE(s.pre_num_sum_sq, 0D) AS pre_num_sum_sq,
    COALESCE(s.pre_den_sum, 0D) AS pre_den_sum,
    COALESCE(s.pre_den_sum_sq, 0D) AS pre_den_sum_sq,
    COALESCE(s.pre_num_pre_den_sum, 0D) AS pre_num_pre_den_sum,
    COALESCE(s.num_pre_num_sum, 0D) AS num_pre_num_sum,
    COALESCE(s.num_pre_den_sum, 0D) AS num_pre_den_sum,
    COALESCE(s.den_pre_num_sum, 0D) AS den_pre_num_sum,
    COALESCE(s.den_pre_den_sum, 0D) AS den_pre_den_sum
FROM grid AS g
LEFT JOIN sums AS s
  ON s.segment = g.segment AND s.metric = g.metric AND s.variant = g.variant
ORDER BY g.segment <> 'all', g.segment, g.metric, g.variant
