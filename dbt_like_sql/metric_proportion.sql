-- Per analysed unit and `proportion` metric: 1 if the unit had at least one of the metric's events
-- in [first_ts, min(D + 1 day, first_ts + window_days)), else 0; the CUPED covariate is the same
-- indicator over [first_ts - lookback days, first_ts). den = pre_den = 1.
-- Var proportion_metrics: [{id, event, where, window_days}], one entry per metric.
-- Var unit: when it is not user_id, a unit's events are those of all its members (unit_members).
{% import '_macros.sql' as mac %}
{% set members = ref('unit_members') if var('unit') != 'user_id' else none %}
{% for m in var('proportion_metrics') %}
{% if not loop.first %}UNION ALL{% endif %}
SELECT
    {{ m.id | sql }} AS metric,
    u.unit,
    u.variant,
    {{ mac.aggregate('any', 'e.ts >= u.first_ts') }} AS num,
    1D AS den,
    {{ mac.aggregate('any', 'e.ts < u.first_ts') }} AS pre_num,
    1D AS pre_den
{% call mac.join_events(m, [m], members, source('events')) %}{{ ref('analysed_units') }}{% endcall %}
{% else %}
{{ mac.no_rows() }}
{% endfor %}
