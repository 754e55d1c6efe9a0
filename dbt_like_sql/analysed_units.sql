-- The analysed population: first-exposed units that are not crossovers (overridden units never
-- reach first_exposures), with the end of their metric window (D + 1 day; a metric's window_days
-- may end it earlier), the start of their CUPED pre-period (first exposure - lookback days) and
-- the attributes of their first exposure.
SELECT
    unit,
    variant,
    first_ts,
    first_ts - INTERVAL {{ var('lookback_days') | sql }} DAYS AS pre_start_ts,
    TIMESTAMP {{ var('day_end_ts') | sql }} AS day_end_ts,
    attributes
FROM {{ ref('first_exposures') }}
WHERE NOT crossover
