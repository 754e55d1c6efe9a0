-- The exposures of one experiment that count on analysis day D, each with its unit.
--
-- Source `exposures`: the bronze exposure rows of this experiment that count on day D
-- (arrived by D + late_arrival_days, ts < D + 1 day), columns event_id, user_id, variant, ts,
-- attributes (a JSON object as text).
-- Vars: unit (the experiment's randomization unit: "user_id", or an exposure attribute such as
-- "team_id"), start_ts (start_date 00:00 UTC), cutoff_ts (min(D + 1 day, end_date + 1 day, kill
-- time)), overrides (the unit values with a forced assignment; never analysed).
--
-- The unit of an exposure: its user_id when unit = "user_id", else get_json_object(attributes,
-- '$.<unit>') (JSON text: "T1", 17, true); an exposure without that attribute (missing or JSON
-- null) belongs to no unit and is ignored.
WITH with_unit AS (
    SELECT
        {% if var('unit') == 'user_id' -%}
        user_id
        {%- else -%}
        get_json_object(attributes, {{ ('$.' ~ var('unit')) | sql }})
        {%- endif %} AS unit,
        user_id,
        variant,
        ts,
        event_id,
        attributes
    FROM {{ source('exposures') }}
    -- Exposures inside the experiment's window; those after a stop or kill do not count.
    WHERE ts >= TIMESTAMP {{ var('start_ts') | sql }}
      AND ts < TIMESTAMP {{ var('cutoff_ts') | sql }}
)
SELECT unit, user_id, variant, ts, event_id, attributes
FROM with_unit
WHERE unit IS NOT NULL
  {% if var('overrides') %}
  AND unit NOT IN ({{ var('overrides') | sql }})
  {% endif %}
