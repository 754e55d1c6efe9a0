-- First exposure of every unit of one experiment on analysis day D.
--
-- crossover: the unit was seen in more than one variant (excluded from the analysis, counted).
-- attributes: those of the unit's FIRST in-window exposure (earliest ts, ties broken by the
-- smaller event_id); the segments are read from them.
SELECT
    unit,
    MIN(ts) AS first_ts,
    COUNT(DISTINCT variant) AS n_variants,
    MIN(variant) AS variant,                      -- meaningful only when not a crossover
    COUNT(DISTINCT variant) > 1 AS crossover,     -- seen in more than one variant
    MIN_BY(attributes, STRUCT(ts, event_id)) AS attributes
FROM {{ ref('in_window_exposures') }}
GROUP BY unit
