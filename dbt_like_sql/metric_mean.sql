-- Per analysed unit and `mean` metric: the value (sum or count of the metric's events in
-- [first_ts, min(D + 1 day, first_ts + window_days))) and the CUPED covariate (the same aggregate
-- over [first_ts - lookback days, first_ts)). A mean has den = pre_den = 1.
-- Var mean_metrics: [{id, event, where, agg: sum|count, window_days}], one entry per metric.
-- Var unit: when it is not user_id, a unit's events are those of all its members (unit_members).
{% import '_macros.sql' as mac %}
{% set members = ref('unit_members') if var('unit') != 'user_id' else none %}
{% for m in var('mean_metrics') %}
{% if not loop.first %}UNION ALL{% endif %}
SELECT
    {{ m.id | sql }} AS metric,
    u.unit,
    u.variant,
    {{ mac.aggregate(m.agg, 'e.ts >= u.first_ts') }} AS num,
    1D AS den,
    {{ mac.aggregate(m.agg, 'e.ts < u.first_ts') }} AS pre_num,
    1D AS pre_den
{% call mac.join_events(m, [m], members, source('events')) %}{{ ref('analysed_units') }}{% endcall %}
{% else %}
{{ mac.no_rows() }}
{% endfor %}
