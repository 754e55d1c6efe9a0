-- Sufficient statistics per metric and variant (the RatioMoments fields, the columns of
-- gold.sufficient_stats): n analysed units and the sums, sums of squares and cross products of
-- num, den and their pre-period twins. DOUBLE arithmetic throughout: Spark's ANSI mode fails on
-- integer overflow.
WITH per_unit AS (
    SELECT * FROM {{ ref('metric_mean') }}
    UNION ALL
    SELECT * FROM {{ ref('metric_proportion') }}
    UNION ALL
    SELECT * FROM {{ ref('metric_ratio') }}
)
SELECT
    metric,
    variant,
    COUNT(*) AS n,
    SUM(num) AS num_sum,
    SUM(num * num) AS num_sum_sq,
    SUM(den) AS den_sum,
    SUM(den * den) AS den_sum_sq,
    SUM(num * den) AS num_den_sum,
    SUM(pre_num) AS pre_num_sum,
    SUM(pre_num * pre_num) AS pre_num_sum_sq,
    SUM(pre_den) AS pre_den_sum,
    SUM(pre_den * pre_den) AS pre_den_sum_sq,
    SUM(pre_num * pre_den) AS pre_num_pre_den_sum,
    SUM(num * pre_num) AS num_pre_num_sum,
    SUM(num * pre_den) AS num_pre_den_sum,
    SUM(den * pre_num) AS den_pre_num_sum,
    SUM(den * pre_den) AS den_pre_den_sum
FROM per_unit
GROUP BY metric, variant
