-- Per quantile metric and analysed unit that counts for it on day D: the values its quantile is
-- taken of, as an ARRAY<DOUBLE> read from unit_sides (no other join to the events):
--   level event: the unit's event values in the metric's window (a `values` side); a unit
--                without such events adds no value and is not among the arm's units: no row;
--   level unit:  one value, the unit's sum of them (the metric's `sum` side; 0.0 without events).
-- A windowed metric counts a unit only once its window has ended (s<k>_mature, as the other
-- kinds; none with include_maturing): maturing units have no row here.
-- Var quantile_metrics: [{id, q, level, side, mature_sides, bounds}]; `side` numbers the
-- unit_sides columns of the values (event) or of the per-unit sum (unit).
{% set metrics = var('quantile_metrics') %}
{% if metrics %}
SELECT metric, unit, variant, vals
FROM (
    SELECT
        unit,
        variant,
        stack({{ metrics | length }}
        {%- for m in metrics %}, {{ m.id | sql }}, {% if m.level == 'unit' %}ARRAY(s{{ m.side }}_post){% else %}s{{ m.side }}_post{% endif %}, {% if m.mature_sides %}s{{ m.side }}_mature{% else %}TRUE{% endif %}{% endfor -%}
        ) AS (metric, vals, mature)
    FROM {{ ref('unit_sides') }}
) AS t
WHERE mature AND SIZE(vals) > 0
{% else %}
SELECT CAST(NULL AS STRING) AS metric, unit, variant, CAST(NULL AS ARRAY<DOUBLE>) AS vals
FROM {{ ref('unit_sides') }}
WHERE FALSE
{% endif %}
