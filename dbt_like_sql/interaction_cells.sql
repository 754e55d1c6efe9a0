-- Interaction cells of one analysis day, for every pair of concurrent experiments at once: per
-- experiment E, decision metric and arm i of E, and for every experiment F of the day and arm j
-- of F, n and the sums of num, num², den, den² and num·den over E's units in arm i that are in
-- arm j of F (columns n_<f>_<j>, num_sum_<f>_<j>, ...; f numbers var interaction_experiments).
-- The cell (i, j) of the pair (E, F) on a metric E decides on is in E's row for i, columns of
-- (f, j) (ab_pipelines.analysis.interactions turns the wide rows into the pairs' cells).
--
-- A day-level model: it reads no bronze and no other model, but two sources the analysis keeps
-- while it runs every experiment's models (local checkpoints, unioned over the experiments):
--   interaction_values: (experiment_id, metric, unit, arm, num, den), each experiment's
--     metric_values of its decision metrics, mature units only (winsorized as in its analysis);
--   interaction_arms: (experiment_id, unit, arm), each experiment's analysed_units.
-- `arm` is the variant's position in the experiment's configured variants (0: the baseline).
--
-- One grouping, no fan-out: each unit's arms in every experiment become one row (its assignment
-- vector, a<f>), joined 1:1 to the unit's value rows; the cells of all pairs are conditional sums
-- over the same rows (the one-hot product of ab_pipelines.stats.interactions.interaction_cells,
-- in SQL). The rows grouped are the experiments' unit-metric rows, whatever the number of pairs.
-- Ordered by experiment_id, metric, arm.
{%- set experiments = var('interaction_experiments') %}
WITH vectors AS (
    SELECT
        unit
        {%- for e in experiments %},
        MAX(CASE WHEN experiment_id = {{ e.id | sql }} THEN arm END) AS a{{ loop.index0 }}
        {%- endfor %}
    FROM {{ source('interaction_arms') }}
    GROUP BY unit
),
valued AS (
    SELECT
        experiment_id,
        metric,
        unit,
        arm,
        num,
        num * num AS num_sq,
        den,
        den * den AS den_sq,
        num * den AS num_den
    FROM {{ source('interaction_values') }}
)
SELECT
    v.experiment_id,
    v.metric,
    v.arm
    {%- for e in experiments %}{% set f = loop.index0 %}{% for j in range(e.arms) %},
    COUNT(CASE WHEN w.a{{ f }} = {{ j }} THEN 1 END) AS n_{{ f }}_{{ j }},
    SUM(CASE WHEN w.a{{ f }} = {{ j }} THEN v.num END) AS num_sum_{{ f }}_{{ j }},
    SUM(CASE WHEN w.a{{ f }} = {{ j }} THEN v.num_sq END) AS num_sum_sq_{{ f }}_{{ j }},
    SUM(CASE WHEN w.a{{ f }} = {{ j }} THEN v.den END) AS den_sum_{{ f }}_{{ j }},
    SUM(CASE WHEN w.a{{ f }} = {{ j }} THEN v.den_sq END) AS den_sum_sq_{{ f }}_{{ j }},
    SUM(CASE WHEN w.a{{ f }} = {{ j }} THEN v.num_den END) AS num_den_sum_{{ f }}_{{ j }}
    {%- endfor %}{% endfor %}
FROM valued AS v
JOIN vectors AS w
  ON w.unit = v.unit
GROUP BY v.experiment_id, v.metric, v.arm
ORDER BY v.experiment_id, v.metric, v.arm
