-- Per analysed unit and `mean` metric: the value (sum or count of the metric's events in
-- [first_ts, min(D + 1 day, first_ts + window_days))) and the CUPED covariate (the same aggregate
-- over [first_ts - lookback days, first_ts)), both read from the metric's side in unit_sides. A
-- mean has den = pre_den = 1.
-- Var mean_metrics: [{id, side, ...}], one entry per metric; `side` numbers its unit_sides columns.
{% import '_macros.sql' as mac %}
{% call mac.unpivot(var('mean_metrics'), ref('unit_sides')) -%}
{%- for m in var('mean_metrics') %}, {{ m.id | sql }}, s{{ m.side }}_post, 1D, s{{ m.side }}_pre, 1D{% endfor -%}
{%- endcall %}
