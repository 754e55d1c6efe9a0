-- Per analysed unit: the aggregate of every distinct metric side, after and before exposure, from
-- ONE join of the analysed units to their metric events (the metric templates only unpivot it).
--
-- A side is what one part of a metric reads: (event, where, agg, window_start_days,
-- window_days); a mean or proportion metric has one, a ratio two (num, den); metrics reading the
-- same side share it. A quantile metric reads the sides of its companion moments (a unit-level
-- one the sum, an event-level one the sum and the count) and, event-level, a side of agg
-- `values`: the unit's event values in the window as a sorted ARRAY<DOUBLE> (COLLECT_LIST over
-- the same joined rows, so the quantile needs no second join to the events; no s<k>_pre: a
-- quantile has no CUPED covariate).
-- Var sides: [{event, where, agg, window_start_days, window_days, filter}], numbered 0.. in the
-- column names; the events carry one flag per distinct (event, where), m<filter>
-- (mac.flagged_events). With S = window_start_days and N = window_days:
--   s<k>_post:   the aggregate over [first_ts + S days, min(D + 1 day, first_ts + S + N days))
--                (without a window: [first_ts, D + 1 day)),
--   s<k>_pre:    the same over [first_ts - lookback days, first_ts) (the CUPED covariate),
--   s<k>_mature: whether the whole window has ended by D + 1 day (first_ts + S + N days <=
--                D + 1 day); TRUE without a window. The metric templates decide whether a
--                metric waits for it (include_maturing does not).
-- All three come from the same joined rows: a window's start and maturity need no other join.
-- A unit without events has 0 everywhere (LEFT JOIN, COALESCE). Var unit: when it is not user_id,
-- a unit's events are those of all its members (unit_members).
{% import '_macros.sql' as mac %}
{% set members = ref('unit_members') if var('unit') != 'user_id' else none %}
{% if var('sides') %}
SELECT
    u.unit,
    MIN(u.variant) AS variant
    {%- for s in var('sides') %},
    {{ mac.aggregate(s.agg, 'e.m' ~ s.filter ~ ' AND e.ts >= ' ~ mac.value_start(s) ~ ' AND e.ts < ' ~ mac.value_end(s)) }} AS s{{ loop.index0 }}_post,
    {% if s.agg != 'values' -%}
    {{ mac.aggregate(s.agg, 'e.m' ~ s.filter ~ ' AND e.ts < u.first_ts') }} AS s{{ loop.index0 }}_pre,
    {% endif -%}
    {{ mac.window_ended(s) }} AS s{{ loop.index0 }}_mature
    {%- endfor %}
{% call mac.join_events(var('sides'), members, source('events')) %}{{ ref('analysed_units') }}{% endcall %}
{% else %}
SELECT unit, variant FROM {{ ref('analysed_units') }} WHERE FALSE
{% endif %}
