-- Per analysed unit and `ratio` metric: the numerator and the denominator, each the aggregate of
-- its own events in [first_ts, min(D + 1 day, first_ts + window_days)), and their CUPED twins over
-- [first_ts - lookback days, first_ts). A unit without events has 0 for both parts.
-- Var ratio_metrics: [{id, window_days, num: {event, where, agg}, den: {event, where, agg}}].
-- Var unit: when it is not user_id, a unit's events are those of all its members (unit_members).
{% import '_macros.sql' as mac %}
{% set members = ref('unit_members') if var('unit') != 'user_id' else none %}
{% for m in var('ratio_metrics') %}
{% if not loop.first %}UNION ALL{% endif %}
SELECT
    {{ m.id | sql }} AS metric,
    u.unit,
    u.variant,
    {{ mac.aggregate(m.num.agg, mac.matches(m.num) ~ ' AND e.ts >= u.first_ts') }} AS num,
    {{ mac.aggregate(m.den.agg, mac.matches(m.den) ~ ' AND e.ts >= u.first_ts') }} AS den,
    {{ mac.aggregate(m.num.agg, mac.matches(m.num) ~ ' AND e.ts < u.first_ts') }} AS pre_num,
    {{ mac.aggregate(m.den.agg, mac.matches(m.den) ~ ' AND e.ts < u.first_ts') }} AS pre_den
{% call mac.join_events(m, [m.num, m.den], members, source('events')) %}{{ ref('analysed_units') }}{% endcall %}
{% else %}
{{ mac.no_rows() }}
{% endfor %}
