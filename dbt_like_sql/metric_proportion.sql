-- Per analysed unit and `proportion` metric: 1 if the unit had at least one of the metric's events
-- in its window ([first_ts + window_start_days, min(D + 1 day, first_ts + window_start_days +
-- window_days)), or [first_ts, D + 1 day) without one), else 0; the CUPED covariate is the same
-- over [first_ts - lookback days, first_ts). Both are read from the metric's side in unit_sides
-- (agg `any`: MAX of 1). den = pre_den = 1. `mature`: whether the unit counts on day D (its whole
-- window has ended; TRUE without a window or with include_maturing), see mac.unpivot.
-- Var proportion_metrics: [{id, side, mature_sides}]; `side` numbers its unit_sides columns.
{% import '_macros.sql' as mac %}
{% call mac.unpivot(var('proportion_metrics'), ref('unit_sides')) -%}
{%- for m in var('proportion_metrics') %}, {{ m.id | sql }}, s{{ m.side }}_post, 1D, s{{ m.side }}_pre, 1D{% endfor -%}
{%- endcall %}
