-- First exposure of every unit of one experiment on analysis day D.
--
-- Source `exposures`: the bronze exposure rows of this experiment that count on day D
-- (arrived by D + late_arrival_days, ts < D + 1 day).
-- Vars: start_ts (start_date 00:00 UTC), cutoff_ts (min(D + 1 day, end_date + 1 day, kill time)),
-- overrides (the units with a forced assignment; never analysed).
WITH in_window AS (
    -- Exposures inside the experiment's window; those after a stop or kill do not count.
    SELECT user_id AS unit, variant, ts
    FROM exposures
    WHERE ts >= TIMESTAMP {{ var('start_ts') | sql }}
      AND ts < TIMESTAMP {{ var('cutoff_ts') | sql }}
      {% if var('overrides') %}
      AND user_id NOT IN ({{ var('overrides') | sql }})
      {% endif %}
)
SELECT
    unit,
    MIN(ts) AS first_ts,
    COUNT(DISTINCT variant) AS n_variants,
    MIN(variant) AS variant,                      -- meaningful only when not a crossover
    COUNT(DISTINCT variant) > 1 AS crossover      -- seen in more than one variant
FROM in_window
GROUP BY unit
