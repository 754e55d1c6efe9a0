-- First exposure of every unit of one experiment on analysis day D.
--
-- crossover: the unit was seen in more than one variant (excluded from the analysis, counted);
-- MIN <> MAX rather than COUNT(DISTINCT variant) > 1: the same answer without a second
-- aggregation level.
-- attributes: those of the unit's FIRST in-window exposure (earliest ts, ties broken by the
-- smaller event_id); the segments are read from them. Only computed when the experiment has
-- segments (var segments): MIN_BY over a string makes Spark sort the exposures instead of hashing.
SELECT
    unit,
    MIN(ts) AS first_ts,
    MIN(variant) AS variant,                      -- meaningful only when not a crossover
    COALESCE(MIN(variant) <> MAX(variant), FALSE) AS crossover,
    {% if var('segments') -%}
    MIN_BY(attributes, STRUCT(ts, event_id))
    {%- else -%}
    CAST(NULL AS STRING)
    {%- endif %} AS attributes
FROM {{ ref('in_window_exposures') }}
GROUP BY unit
