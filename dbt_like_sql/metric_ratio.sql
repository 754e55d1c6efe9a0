-- Per analysed unit and `ratio` metric: the numerator and the denominator, each the aggregate of
-- its own events in [first_ts, min(D + 1 day, first_ts + window_days)), and their CUPED twins over
-- [first_ts - lookback days, first_ts), read from the two sides in unit_sides. A unit without
-- events has 0 for both parts.
-- Var ratio_metrics: [{id, num_side, den_side, ...}]; the sides number unit_sides columns.
{% import '_macros.sql' as mac %}
{% call mac.unpivot(var('ratio_metrics'), ref('unit_sides')) -%}
{%- for m in var('ratio_metrics') %}, {{ m.id | sql }}, s{{ m.num_side }}_post, s{{ m.den_side }}_post, s{{ m.num_side }}_pre, s{{ m.den_side }}_pre{% endfor -%}
{%- endcall %}
