-- Per analysed unit and `mean` metric: the value (sum or count of the metric's events in its
-- window, [first_ts + window_start_days, min(D + 1 day, first_ts + window_start_days +
-- window_days)), or [first_ts, D + 1 day) without one) and the CUPED covariate (the same
-- aggregate over [first_ts - lookback days, first_ts)), both read from the metric's side in
-- unit_sides. A mean has den = pre_den = 1. `mature`: whether the unit counts on day D (its whole
-- window has ended; TRUE without a window or with include_maturing), see mac.unpivot.
-- Var mean_metrics: [{id, side, mature_sides}], one entry per metric; `side` numbers its
-- unit_sides columns.
{% import '_macros.sql' as mac %}
{% call mac.unpivot(var('mean_metrics'), ref('unit_sides')) -%}
{%- for m in var('mean_metrics') %}, {{ m.id | sql }}, s{{ m.side }}_post, 1D, s{{ m.side }}_pre, 1D{% endfor -%}
{%- endcall %}
