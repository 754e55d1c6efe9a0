{#- Shared pieces of the metric templates (a file starting with "_" is not a model).
    `e` is a metric event, `u` an analysed unit (see analysed_units.sql). -#}

{#- Whether event `e` is one this side of a metric reads: its name and the `where` filter on
    properties (values compared as JSON text, e.g. currency = 'USD', flag = 'true'). -#}
{% macro matches(side) -%}
(e.event = {{ side.event | sql }}
{%- for key, value in side.where.items() %} AND get_json_object(e.properties, {{ ('$.' ~ key) | sql }}) = {{ value | sql }}{% endfor %})
{%- endmacro %}

{#- The start of a unit's window for one metric side: its first exposure, window_start_days later
    with a window (a retention day: window_start_days 7, window_days 1). -#}
{% macro value_start(side) -%}
{% if side.window_start_days %}u.first_ts + INTERVAL {{ side.window_start_days | sql }} DAYS{% else %}u.first_ts{% endif %}
{%- endmacro %}

{#- The end of a unit's window for one metric side: D + 1 day, or earlier with window_days (the
    window ends window_start_days + window_days after first exposure). -#}
{% macro value_end(side) -%}
{% if side.window_days %}LEAST(u.day_end_ts, u.first_ts + INTERVAL {{ (side.window_start_days + side.window_days) | sql }} DAYS){% else %}u.day_end_ts{% endif %}
{%- endmacro %}

{#- Whether a unit's whole window for one metric side has ended by D + 1 day (half-open: a window
    ending exactly at D + 1 day is complete); TRUE without a window. An aggregate, for unit_sides,
    whose rows are grouped by the unit (u.first_ts and u.day_end_ts are the same on all of them). -#}
{% macro window_ended(side) -%}
{% if side.window_days %}MIN(u.first_ts) + INTERVAL {{ (side.window_start_days + side.window_days) | sql }} DAYS <= MIN(u.day_end_ts){% else %}TRUE{% endif %}
{%- endmacro %}

{#- The per-unit aggregate (sum of values, count, or any = 0/1) of the events meeting `condition`;
    0 when there are none, so units without events count as 0. DOUBLE from here on.
    agg `values` (an event-level quantile metric): the values themselves, ARRAY<DOUBLE>, sorted so
    that both engines give the same array ([] without events); a quantile needs every value. -#}
{% macro aggregate(agg, condition) -%}
{% if agg == 'values' -%}
SORT_ARRAY(COLLECT_LIST(CASE WHEN {{ condition }} THEN e.value END))
{%- else -%}
CAST(COALESCE({% if agg == 'any' %}MAX{% else %}SUM{% endif %}(CASE WHEN {{ condition }} THEN {% if agg == 'sum' %}e.value{% else %}1{% endif %} END), 0) AS DOUBLE)
{%- endif %}
{%- endmacro %}

{#- The metric events any of `sides` reads, each with one boolean per event filter, m<k>: whether
    the sides numbered `filter` = k read it (see `matches`; sides with the same event and `where`
    share a filter). Computed once per event, before the join, so the join moves (user_id, ts,
    value, flags) and not the properties text, and `where` filters are evaluated once per event
    rather than once per aggregate. -#}
{% macro flagged_events(sides, events) -%}
(
    SELECT e.user_id, e.ts, e.value
        {%- for side in sides | unique(attribute='filter') %}, {{ matches(side) }} AS m{{ side.filter }}{% endfor %}
    FROM {{ events }} AS e
    WHERE {% for side in sides | unique(attribute='filter') %}{% if not loop.first %} OR {% endif %}{{ matches(side) }}{% endfor %}
)
{%- endmacro %}

{#- The join of analysed units to the events that may count for any of `sides`: from the start of
    the CUPED pre-period to D + 1 day (a side's shorter window is applied in its aggregate). A LEFT
    JOIN keeps units without events.
    `members` is the unit_members view when the unit is not user_id (a unit's events are those of
    every user_id seen under it), or none: then the unit is the user_id and events join directly.
    `events` is the metric events source (the model's source('events')). The caller gives the
    analysed units.
    The join key is the user_id itself, and the rows are grouped by the unit alone (a unit has
    one variant, taken with MIN in unit_sides): the join leaves them partitioned by that key, so
    the grouping needs no second shuffle of the joined rows, on Sail as on JVM Spark. (The JVM
    era joined on a 64-bit hash of the user_id and grouped by it first; on Sail the plain key
    is about 12% faster for the whole analysis, docs/performance.md.) -#}
{% macro join_events(sides, members, events) -%}
FROM {{ caller() }} AS u
{% if members -%}
JOIN {{ members }} AS mb ON mb.unit = u.unit
LEFT JOIN {{ flagged_events(sides, events) }} AS e
    ON e.user_id = mb.user_id
{%- else -%}
LEFT JOIN {{ flagged_events(sides, events) }} AS e
    ON e.user_id = u.unit
{%- endif %}
   AND e.ts >= u.pre_start_ts
   AND e.ts < u.day_end_ts
GROUP BY u.unit
{%- endmacro %}

{#- One row per unit and metric from the wide rows of `sides` (unit_sides): the caller gives,
    per metric, ", 'id', num, den, pre_num, pre_den" (Spark's stack). The columns are those of
    every metric template: metric, unit, variant, num, den, pre_num, pre_den, mature; no metric,
    no rows.
    `mature`: whether the unit counts for the metric on day D. A metric entry's `mature_sides`
    (metric_vars) lists the sides whose s<k>_mature it waits for (a ratio: both); empty (no window,
    or include_maturing) means always TRUE. Only the flags some metric waits for are carried
    through the stack. -#}
{% macro unpivot(metrics, sides) -%}
{%- set waiting = metrics | selectattr('mature_sides') | list %}
{%- set flags = waiting | map(attribute='mature_sides') | sum(start=[]) | unique | list %}
SELECT metric, unit, variant, num, den, pre_num, pre_den,
    {% if waiting -%}
    CASE metric
        {%- for m in waiting %} WHEN {{ m.id | sql }} THEN {% for k in m.mature_sides %}{% if not loop.first %} AND {% endif %}s{{ k }}_mature{% endfor %}{% endfor %}
        ELSE TRUE END
    {%- else -%}
    TRUE
    {%- endif %} AS mature
FROM (
    SELECT
        unit,
        variant,
        {% for k in flags %}s{{ k }}_mature,
        {% endfor -%}
        {% if metrics -%}
        stack({{ metrics | length }}{{ caller() }}) AS (metric, num, den, pre_num, pre_den)
        {%- else -%}
        CAST(NULL AS STRING) AS metric, 0D AS num, 0D AS den, 0D AS pre_num, 0D AS pre_den
        {%- endif %}
    FROM {{ sides }}
) AS t
{%- if not metrics %}
WHERE FALSE
{%- endif %}
{%- endmacro %}
