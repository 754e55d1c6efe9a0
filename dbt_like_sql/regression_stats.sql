-- Regression adjustment's sufficient statistics (segment "all"): per metric and variant, n and the
-- sums, squares and cross products of every column of Z = [num, den, pre_num, pre_den, x_1 .. x_K],
-- named as RegressionMoments.column_names names them (n, <c>_sum, <c>_sum_sq, <c>_<d>_sum), from
-- one grouping over the experiment's per-unit values. Python (ab_pipelines.analysis.
-- regression_stats) keeps each metric's own columns: [num, pre_num] of a mean or proportion,
-- [num, den, pre_num, pre_den] of a ratio, then the x's that are not the metric itself.
--
-- Runs once per experiment that sets analysis.covariates, in its Spark session while its models
-- are kept: the sources are cut from them (regression_values = metric_values, regression_units
-- = analysed_units, regression_exposures = in_window_exposures), so this is not one of the
-- per-experiment models (sql_models.models_reading). Vars (regression_stats.regression_vars):
--   regression_metrics: the non-quantile metric ids the rows are for;
--   variants: the configured variants (plus any other an analysed unit has);
--   covariate_metrics: [{id, num, den}]: x columns holding another metric's pre_num (and pre_den
--     for a ratio; den is null otherwise), the winsorized values of metric_values;
--   covariate_attributes: [{name}], the attributes read (a<i>: the i-th, from 1);
--   attribute_dummies: [{attribute: i, rank: r, column}]: x column = 1 when the unit's value of
--     attribute i is its r-th most frequent value among the analysed units of day D (ties: the
--     smaller value first, as unit_segments ranks segments; absent or JSON null is "(missing)");
--     `<column>_level` gives that value (null when the attribute has fewer values);
--   attributes_on_units: analysed_units carries the first exposure's attributes (the experiment
--     has segments); otherwise they are read here from the in-window exposures, as
--     first_exposures would (earliest ts, ties by the smaller event_id);
--   covariate_columns: every x column name, in Z's order.
-- Only the mature units of a metric count (n and the sums); every (metric, variant) of the grid
-- has a row (n = 0, sums 0.0 where no unit counts). Ordered by metric, variant.
{%- set attributes = var('covariate_attributes') %}
{%- set pre_metrics = var('covariate_metrics') %}
{%- set dummies = var('attribute_dummies') %}
{%- set cols = ['num', 'den', 'pre_num', 'pre_den'] + var('covariate_columns') %}
WITH unit_values AS (
    SELECT
        metric,
        unit,
        variant,
        CAST(num AS DOUBLE) AS num,
        CAST(den AS DOUBLE) AS den,
        CAST(pre_num AS DOUBLE) AS pre_num,
        CAST(pre_den AS DOUBLE) AS pre_den,
        mature
    FROM {{ source('regression_values') }}
),
{% if attributes %}
{% if var('attributes_on_units') %}
first_attributes AS (
    SELECT unit, attributes FROM {{ source('regression_units') }}
),
{% else %}
first_attributes AS (
    SELECT unit, MIN_BY(attributes, STRUCT(ts, event_id)) AS attributes
    FROM {{ source('regression_exposures') }}
    GROUP BY unit
),
{% endif %}
units AS (
    SELECT
        u.unit
        {%- for a in attributes %},
        COALESCE(get_json_object(f.attributes, {{ ('$.' ~ a.name) | sql }}), '(missing)') AS a{{ loop.index }}
        {%- endfor %}
    FROM {{ source('regression_units') }} AS u
    LEFT JOIN first_attributes AS f
      ON f.unit = u.unit
),
ranked AS (
    {% for a in attributes %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT
        {{ loop.index }} AS attribute,
        a{{ loop.index }} AS value,
        ROW_NUMBER() OVER (ORDER BY COUNT(*) DESC, a{{ loop.index }} ASC) AS value_rank
    FROM units
    GROUP BY a{{ loop.index }}
    {% endfor %}
),
levels AS (
    SELECT
        {% for x in dummies %}
        {%- if not loop.first %},
        {% endif -%}
        MAX(CASE WHEN attribute = {{ x.attribute }} AND value_rank = {{ x.rank }} THEN value END) AS {{ x.column }}_level
        {%- endfor %}
    FROM ranked
),
{% else %}
units AS (
    SELECT unit FROM {{ source('regression_units') }}
),
{% endif %}
{% if pre_metrics %}
pre AS (
    SELECT
        unit
        {%- for m in pre_metrics %},
        MAX(CASE WHEN metric = {{ m.id | sql }} THEN pre_num END) AS {{ m.num }}
        {%- if m.den %},
        MAX(CASE WHEN metric = {{ m.id | sql }} THEN pre_den END) AS {{ m.den }}
        {%- endif %}
        {%- endfor %}
    FROM unit_values
    WHERE metric IN ({{ pre_metrics | map(attribute='id') | list | sql }})
    GROUP BY unit
),
{% endif %}
design AS (
    SELECT
        u.unit
        {%- for m in pre_metrics %},
        COALESCE(p.{{ m.num }}, 0D) AS {{ m.num }}
        {%- if m.den %},
        COALESCE(p.{{ m.den }}, 0D) AS {{ m.den }}
        {%- endif %}
        {%- endfor %}
        {%- for x in dummies %},
        CASE WHEN u.a{{ x.attribute }} = l.{{ x.column }}_level THEN 1D ELSE 0D END AS {{ x.column }}
        {%- endfor %}
    FROM units AS u
    {% if pre_metrics %}
    LEFT JOIN pre AS p
      ON p.unit = u.unit
    {% endif %}
    {% if attributes %}
    CROSS JOIN levels AS l
    {% endif %}
),
sums AS (
    SELECT
        z.metric,
        z.variant,
        COUNT(*) AS n
        {%- for c in cols %},
        SUM(z.{{ c }}) AS {{ c }}_sum,
        SUM(z.{{ c }} * z.{{ c }}) AS {{ c }}_sum_sq
        {%- endfor %}
        {%- for c in cols %}{% set i = loop.index0 %}{% for d in cols[i + 1:] %},
        SUM(z.{{ c }} * z.{{ d }}) AS {{ c }}_{{ d }}_sum
        {%- endfor %}{% endfor %}
    FROM (
        SELECT v.metric, v.variant, v.num, v.den, v.pre_num, v.pre_den
            {%- for c in var('covariate_columns') %}, d.{{ c }}{% endfor %}
        FROM unit_values AS v
        JOIN design AS d
          ON d.unit = v.unit
        WHERE v.mature AND v.metric IN ({{ var('regression_metrics') | sql }})
    ) AS z
    GROUP BY z.metric, z.variant
),
metrics AS (
    {% for m in var('regression_metrics') %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT {{ m | sql }} AS metric
    {% endfor %}
),
variants AS (
    {% for v in var('variants') %}
    SELECT {{ v | sql }} AS variant
    UNION
    {% endfor %}
    SELECT variant FROM {{ source('regression_units') }}
)
SELECT
    g.metric,
    g.variant,
    COALESCE(s.n, 0) AS n
    {%- for c in cols %},
    COALESCE(s.{{ c }}_sum, 0D) AS {{ c }}_sum,
    COALESCE(s.{{ c }}_sum_sq, 0D) AS {{ c }}_sum_sq
    {%- endfor %}
    {%- for c in cols %}{% set i = loop.index0 %}{% for d in cols[i + 1:] %},
    COALESCE(s.{{ c }}_{{ d }}_sum, 0D) AS {{ c }}_{{ d }}_sum
    {%- endfor %}{% endfor %}
    {%- for x in dummies %},
    l.{{ x.column }}_level
    {%- endfor %}
FROM (SELECT metric, variant FROM metrics CROSS JOIN variants) AS g
LEFT JOIN sums AS s
  ON s.metric = g.metric AND s.variant = g.variant
{% if attributes %}
CROSS JOIN levels AS l
{% endif %}
ORDER BY g.metric, g.variant
