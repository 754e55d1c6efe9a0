-- Sufficient statistics per segment, metric and variant (the RatioMoments fields, the columns of
-- gold.sufficient_stats): n analysed units and the sums, sums of squares and cross products of
-- num, den and their pre-period twins. DOUBLE arithmetic throughout: Spark's ANSI mode fails on
-- integer overflow.
--
-- Only mature units are counted in n and the sums (metric_values' `mature`); `maturing` counts
-- the analysed units left out because the metric's window had not ended by D + 1 day (0 for a
-- metric without a window or with include_maturing). n + maturing = the analysed units.
--
-- Complete: one row for every segment present ("all" always; a label when it has units), every
-- metric of the experiment (var metric_ids) and every variant (var variants: the configured ones,
-- plus any other variant an analysed unit has); n = 0 and sums 0.0 where there are no units (or
-- only maturing ones).
-- Ordered by segment ("all" first), metric, variant.
--
-- A quantile metric's row holds its companion moments in the columns above (the mean of the same
-- values: unit level, the per-unit sum as a mean; event level, Σ values / Σ events as a ratio),
-- so n, maturing and the health checks mean what they mean for every metric, and its
-- QuantileMoments in the q_* columns (quantile_stats; NULL on the rows of other metrics):
-- q_level (ν), q_n, q_n_star, q_value (Q̂), q_lower, q_upper, and at level event q_n_units,
-- q_below_sum, q_below_sum_sq, q_events_sum, q_events_sum_sq, q_below_events_sum (NULL at level
-- unit). An arm without values: q_n = 0, q_n_star = 100, the quantiles NULL, the sums 0.
--
-- Interaction cells (var interaction_partners, empty unless the day's interaction scan asks): the
-- partners are the experiments whose arms the scan needs against this experiment's values, each
-- {id, arms, column}; the source interaction_vectors has one row per unit analysed in any
-- experiment the day's scan pairs, with its arm in each of them (a column per experiment, NULL
-- where the unit is not analysed; ab_pipelines.analysis.interactions). The "all" rows then also
-- carry interaction_cells, an ARRAY<DOUBLE>: for each partner in order and each arm j of it, the
-- sums named by the first list of var interaction_sums, in its order (n, num_sum, num_sum_sq),
-- over this experiment's mature units in the row's variant that are in arm j of the partner
-- (NULL where no unit is). With a second list (den_sum, den_sum_sq, num_den_sum: a ratio metric
-- is tested) the rows of ratio metrics also carry interaction_den_cells, laid out alike (NULL on
-- other rows). The den sums are not more sums per row: a ratio metric's rows enter the grouping
-- twice (part 0: n, num, num²; part 1: den, den², num·den, in the same three sums), grouped
-- apart, and the part-1 group's cells are moved onto the part-0 row, whose statistics are the
-- model's (part-1 groups are dropped). A conditional sum costs the engine the same per row
-- whatever its value: three more sums over every metric's rows cost more than the ratio
-- metrics' rows twice (docs/analysis.md, "Cost measured").
-- They are summed in the same grouping as the statistics above (the per-unit values are read
-- once); one array column, not a column per sum, keeps the plan small (Sail's planning time
-- grows with the columns carried through the joins below). NULL on segment rows;
-- gold.sufficient_stats does not keep the columns.
{%- set partners = var('interaction_partners') %}
{%- set cell_parts = var('interaction_sums') %}
{%- set cell_terms = {'n': 'CASE WHEN mature THEN 1D ELSE 0D END', 'num_sum': 'num',
                      'num_sum_sq': 'num * num', 'den_sum': 'den', 'den_sum_sq': 'den * den',
                      'num_den_sum': 'num * den'} %}
{#- The cells: conditional sums over the partners' arms (x: interaction_vectors) of the terms of
    cell_rows, in one array, or a NULL array of the same name and type (the segment rows). -#}
{% macro cells(null) -%}
{%- if partners %},
        {% if null %}CAST(NULL AS ARRAY<DOUBLE>){% else %}ARRAY(
        {%- for p in partners %}{% set k = loop.index0 %}{% for j in range(p.arms) %}
            {%- for c in cell_parts[0] %}{% if not (k == 0 and j == 0 and loop.first) %},{% endif %}
            SUM(CASE WHEN x.{{ p.column }} = {{ j }} THEN v.t{{ loop.index0 }} END)
            {%- endfor %}
        {%- endfor %}{% endfor %}
        ){% endif %} AS interaction_cells
{%- endif %}
{%- endmacro %}
{% macro sums() -%}
        v.metric,
        v.variant,
        COUNT(CASE WHEN v.mature THEN 1 END) AS n,
        COUNT(CASE WHEN NOT v.mature THEN 1 END) AS maturing,
        SUM(v.num) AS num_sum,
        SUM(v.num * v.num) AS num_sum_sq,
        SUM(v.den) AS den_sum,
        SUM(v.den * v.den) AS den_sum_sq,
        SUM(v.num * v.den) AS num_den_sum,
        SUM(v.pre_num) AS pre_num_sum,
        SUM(v.pre_num * v.pre_num) AS pre_num_sum_sq,
        SUM(v.pre_den) AS pre_den_sum,
        SUM(v.pre_den * v.pre_den) AS pre_den_sum_sq,
        SUM(v.pre_num * v.pre_den) AS pre_num_pre_den_sum,
        SUM(v.num * v.pre_num) AS num_pre_num_sum,
        SUM(v.num * v.pre_den) AS num_pre_den_sum,
        SUM(v.den * v.pre_num) AS den_pre_num_sum,
        SUM(v.den * v.pre_den) AS den_pre_den_sum
{%- endmacro %}
-- A maturing unit's values are zeroed here, so one pass gives both: the sums are those of the
-- mature units (adding 0.0 changes no sum) and the unit still counts in `maturing`.
-- Segment "all" is every analysed unit: summed straight from metric_values. Only the segment
-- labels need the join to unit_segments (10 million unit-metric rows at 20 million events: the
-- join cost more than the sums).
WITH counted AS (
    SELECT
        metric,
        unit,
        variant,
        mature,
        CASE WHEN mature THEN num ELSE 0D END AS num,
        CASE WHEN mature THEN den ELSE 0D END AS den,
        CASE WHEN mature THEN pre_num ELSE 0D END AS pre_num,
        CASE WHEN mature THEN pre_den ELSE 0D END AS pre_den
    FROM {{ ref('metric_values') }}
),
{%- if partners %}
{%- set ratios = var('ratio_metrics') | map(attribute='id') | list %}
{%- set den = cell_parts | length > 1 and ratios %}
-- The cells' terms computed once per row (a conditional sum of a column costs less than one of
-- an expression); a maturing unit's terms are 0 (its num and den are, and n counts mature units).
cell_rows AS (
    SELECT
        metric,
        {% if den %}part{% else %}0 AS part{% endif %},
        unit,
        variant,
        mature,
        num,
        den,
        pre_num,
        pre_den
        {%- for i in range(cell_parts[0] | length) %},
        {% if den -%}
        CASE WHEN part = 0 THEN {{ cell_terms[cell_parts[0][i]] }}
             ELSE {{ cell_terms[cell_parts[1][i]] }} END
        {%- else -%}
        {{ cell_terms[cell_parts[0][i]] }}
        {%- endif %} AS t{{ i }}
        {%- endfor %}
    FROM counted
    {%- if den %}
    LATERAL VIEW EXPLODE(
        CASE WHEN metric IN ({{ ratios | sql }}) THEN ARRAY(0, 1) ELSE ARRAY(0) END
    ) AS part
    {%- endif %}
),
all_parts AS (
    SELECT 'all' AS segment, v.part, {{ sums() }}{{ cells(false) }}
    FROM cell_rows AS v
    LEFT JOIN {{ source('interaction_vectors') }} AS x
      ON x.unit = v.unit
    GROUP BY v.metric, v.part, v.variant
),
all_rows AS (
    SELECT
        *,
        LEAD(interaction_cells) OVER (PARTITION BY metric, variant ORDER BY part)
            AS interaction_den_cells
    FROM all_parts
),
{%- endif %}
sums AS (
    {%- if partners %}
    SELECT * FROM all_rows WHERE part = 0
    {%- else %}
    SELECT 'all' AS segment, {{ sums() }}
    FROM counted AS v
    GROUP BY v.metric, v.variant
    {%- endif %}
    {% if var('segments') or var('bandit_periods') %}
    UNION ALL
    SELECT s.segment, {% if partners %}0 AS part, {% endif %}{{ sums() }}{{ cells(true) }}
        {%- if partners %}, CAST(NULL AS ARRAY<DOUBLE>) AS interaction_den_cells{% endif %}
    FROM counted AS v
    JOIN {{ ref('unit_segments') }} AS s
      ON s.unit = v.unit AND s.segment <> 'all'
    GROUP BY s.segment, v.metric, v.variant
    {% endif %}
),
segments AS (
    SELECT 'all' AS segment
    UNION
    SELECT segment FROM {{ ref('unit_segments') }}
),
metrics AS (
    {% for m in var('metric_ids') %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT {{ m | sql }} AS metric
    {% else %}
    SELECT CAST(NULL AS STRING) AS metric WHERE FALSE
    {% endfor %}
),
variants AS (
    {% for v in var('variants') %}
    SELECT {{ v | sql }} AS variant
    UNION
    {% endfor %}
    SELECT variant FROM {{ ref('unit_segments') }}
),
grid AS (
    SELECT segment, metric, variant
    FROM segments CROSS JOIN metrics CROSS JOIN variants
),
quantile_metrics AS (
    {% for m in var('quantile_metrics') %}
    {% if not loop.first %}UNION ALL{% endif %}
    SELECT {{ m.id | sql }} AS metric, CAST({{ m.q | string | sql }} AS DOUBLE) AS q_level,
           {{ (m.level == 'event') | sql }} AS clustered
    {% else %}
    SELECT CAST(NULL AS STRING) AS metric, CAST(NULL AS DOUBLE) AS q_level,
           CAST(NULL AS BOOLEAN) AS clustered
    WHERE FALSE
    {% endfor %}
)
SELECT
    g.segment,
    g.metric,
    g.variant,
    COALESCE(s.n, 0) AS n,
    COALESCE(s.maturing, 0) AS maturing,
    COALESCE(s.num_sum, 0D) AS num_sum,
    COALESCE(s.num_sum_sq, 0D) AS num_sum_sq,
    COALESCE(s.den_sum, 0D) AS den_sum,
    COALESCE(s.den_sum_sq, 0D) AS den_sum_sq,
    COALESCE(s.num_den_sum, 0D) AS num_den_sum,
    COALESCE(s.pre_num_sum, 0D) AS pre_num_sum,
    COALESCE(s.pre_num_sum_sq, 0D) AS pre_num_sum_sq,
    COALESCE(s.pre_den_sum, 0D) AS pre_den_sum,
    COALESCE(s.pre_den_sum_sq, 0D) AS pre_den_sum_sq,
    COALESCE(s.pre_num_pre_den_sum, 0D) AS pre_num_pre_den_sum,
    COALESCE(s.num_pre_num_sum, 0D) AS num_pre_num_sum,
    COALESCE(s.num_pre_den_sum, 0D) AS num_pre_den_sum,
    COALESCE(s.den_pre_num_sum, 0D) AS den_pre_num_sum,
    COALESCE(s.den_pre_den_sum, 0D) AS den_pre_den_sum,
    qm.q_level,
    CASE WHEN qm.metric IS NOT NULL THEN COALESCE(q.n, 0) END AS q_n,
    CASE WHEN qm.metric IS NOT NULL THEN COALESCE(q.n_star, 100) END AS q_n_star,
    q.quantile AS q_value,
    q.lower AS q_lower,
    q.upper AS q_upper,
    CASE WHEN qm.clustered THEN COALESCE(q.n_units, 0) END AS q_n_units,
    CASE WHEN qm.clustered THEN COALESCE(q.below_sum, 0D) END AS q_below_sum,
    CASE WHEN qm.clustered THEN COALESCE(q.below_sum_sq, 0D) END AS q_below_sum_sq,
    CASE WHEN qm.clustered THEN COALESCE(q.events_sum, 0D) END AS q_events_sum,
    CASE WHEN qm.clustered THEN COALESCE(q.events_sum_sq, 0D) END AS q_events_sum_sq,
    CASE WHEN qm.clustered THEN COALESCE(q.below_events_sum, 0D) END AS q_below_events_sum
    {%- if partners %},
    s.interaction_cells,
    s.interaction_den_cells
    {%- endif %}
FROM grid AS g
LEFT JOIN sums AS s
  ON s.segment = g.segment AND s.metric = g.metric AND s.variant = g.variant
LEFT JOIN quantile_metrics AS qm
  ON qm.metric = g.metric
LEFT JOIN {{ ref('quantile_stats') }} AS q
  ON q.segment = g.segment AND q.metric = g.metric AND q.variant = g.variant
ORDER BY g.segment <> 'all', g.segment, g.metric, g.variant
