-- Per analysed unit and metric: the values the sums are taken of, after winsorizing, and whether
-- the unit counts (`mature`: a windowed metric's units whose window has not ended by D + 1 day
-- are maturing, FALSE; sufficient_stats counts them apart and sums only the mature ones).
--
-- Var winsorize: [{id, p}], the mean and ratio metrics with `winsorize: p` (a proportion's values
-- are 0/1, so it is never capped). Such a metric's num is capped at percentile(num, p) and its
-- pre_num (the CUPED covariate) at percentile(pre_num, p), each over its own values of the
-- mature analysed units of day D, variants pooled (segment "all"); den and pre_den are never
-- capped. Maturing units get the same caps (their values are not summed).
-- Spark's exact percentile interpolates linearly between the two closest ranks, like
-- numpy.percentile(values, 100 * p). Segment rows use the same capped values.
WITH per_unit AS (
    SELECT * FROM {{ ref('metric_mean') }}
    UNION ALL
    SELECT * FROM {{ ref('metric_proportion') }}
    UNION ALL
    SELECT * FROM {{ ref('metric_ratio') }}
),
caps AS (
    {% for w in var('winsorize') %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT
        {{ w.id | sql }} AS metric,
        PERCENTILE(num, CAST({{ w.p | sql }} AS DOUBLE)) AS num_cap,
        PERCENTILE(pre_num, CAST({{ w.p | sql }} AS DOUBLE)) AS pre_num_cap
    FROM per_unit
    WHERE metric = {{ w.id | sql }} AND mature
    {% else %}
    SELECT CAST(NULL AS STRING) AS metric, CAST(NULL AS DOUBLE) AS num_cap,
           CAST(NULL AS DOUBLE) AS pre_num_cap
    WHERE FALSE
    {% endfor %}
)
SELECT
    p.metric,
    p.unit,
    p.variant,
    CASE WHEN c.num_cap IS NOT NULL AND p.num > c.num_cap THEN c.num_cap ELSE p.num END AS num,
    p.den,
    CASE
        WHEN c.pre_num_cap IS NOT NULL AND p.pre_num > c.pre_num_cap THEN c.pre_num_cap
        ELSE p.pre_num
    END AS pre_num,
    p.pre_den,
    p.mature
FROM per_unit AS p
LEFT JOIN caps AS c
  ON c.metric = p.metric
