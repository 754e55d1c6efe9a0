-- Per analysed unit and `proportion` metric: 1 if the unit had at least one of the metric's events
-- in [first_ts, min(D + 1 day, first_ts + window_days)), else 0; the CUPED covariate is the same
-- over [first_ts - lookback days, first_ts). Both are read from the metric's side in unit_sides
-- (agg `any`: MAX of 1). den = pre_den = 1.
-- Var proportion_metrics: [{id, side, ...}]; `side` numbers its unit_sides columns.
{% import '_macros.sql' as mac %}
{% call mac.unpivot(var('proportion_metrics'), ref('unit_sides')) -%}
{%- for m in var('proportion_metrics') %}, {{ m.id | sql }}, s{{ m.side }}_post, 1D, s{{ m.side }}_pre, 1D{% endfor -%}
{%- endcall %}
