-- Per analysed unit and `ratio` metric: the numerator and the denominator, each the aggregate of
-- its own events in the metric's window ([first_ts + window_start_days, min(D + 1 day, first_ts +
-- window_start_days + window_days)), or [first_ts, D + 1 day) without one), and their CUPED twins
-- over [first_ts - lookback days, first_ts), read from the two sides in unit_sides. A unit without
-- events has 0 for both parts. `mature`: both sides' windows have ended by D + 1 day (TRUE
-- without a window or with include_maturing), see mac.unpivot.
-- Var ratio_metrics: [{id, num_side, den_side, mature_sides}]; the sides number unit_sides
-- columns.
{% import '_macros.sql' as mac %}
{% call mac.unpivot(var('ratio_metrics'), ref('unit_sides')) -%}
{%- for m in var('ratio_metrics') %}, {{ m.id | sql }}, s{{ m.num_side }}_post, s{{ m.den_side }}_post, s{{ m.num_side }}_pre, s{{ m.den_side }}_pre{% endfor -%}
{%- endcall %}
