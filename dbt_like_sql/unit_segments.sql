-- Every analysed unit's segments: "all", and for each exploratory segment attribute A one label.
--
-- Vars: segments (exposure attribute names, e.g. ["platform", "country"]), segment_top_n.
-- A unit's value of A is get_json_object(attributes, '$.A') of its first in-window exposure
-- (see first_exposures), "(missing)" when absent or JSON null. Per attribute, the segment_top_n
-- values with the most analysed units (ties: the smaller value first) keep their own label
-- "A=<value>"; every other value is pooled into "A=other", which exists only if it has units.
-- So every analysed unit has exactly one label per attribute.
--
-- A bandit (var bandit_periods: its allocation periods, oldest first, each {label, start}) also
-- gets one label per unit for the period in force at its first exposure: the last period whose
-- start is at or before first_ts ("bandit_period=v<config version>"; the first period reaches
-- back to the start). The analysis weights the arms' per-period means by these.
WITH attribute_values AS (
    {% for a in var('segments') %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT
        unit,
        variant,
        {{ a | sql }} AS attribute,
        COALESCE(get_json_object(attributes, {{ ('$.' ~ a) | sql }}), '(missing)') AS value
    FROM {{ ref('analysed_units') }}
    {% else %}
    SELECT CAST(NULL AS STRING) AS unit, CAST(NULL AS STRING) AS variant,
           CAST(NULL AS STRING) AS attribute, CAST(NULL AS STRING) AS value
    WHERE FALSE
    {% endfor %}
),
ranked AS (
    SELECT
        attribute,
        value,
        ROW_NUMBER() OVER (PARTITION BY attribute ORDER BY COUNT(*) DESC, value ASC) AS value_rank
    FROM attribute_values
    GROUP BY attribute, value
)
SELECT unit, variant, 'all' AS segment
FROM {{ ref('analysed_units') }}
UNION ALL
SELECT
    v.unit,
    v.variant,
    CONCAT(
        v.attribute,
        '=',
        CASE WHEN r.value_rank <= {{ var('segment_top_n') | sql }} THEN v.value ELSE 'other' END
    ) AS segment
FROM attribute_values AS v
JOIN ranked AS r
  ON r.attribute = v.attribute AND r.value = v.value
{% if var('bandit_periods') %}
UNION ALL
SELECT
    unit,
    variant,
    CASE
        {%- for p in var('bandit_periods') | reverse %}{% if p.start %}
        WHEN first_ts >= TIMESTAMP {{ p.start | sql }} THEN {{ p.label | sql }}
        {%- endif %}{% endfor %}
        WHEN TRUE THEN {{ var('bandit_periods')[0].label | sql }}
    END AS segment
FROM {{ ref('analysed_units') }}
{% endif %}
