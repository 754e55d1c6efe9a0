"""Differential impact: whether a decision metric's effect differs across a segment attribute.

``gold.heterogeneity`` rows of one experiment and day, from the segment rows of that day's
``gold.sufficient_stats`` (no Spark: the Spark pass already grouped every exploratory segment).
Per decision metric (primary metrics and guardrails; a quantile metric has no per-level
moments to pool and is left out), non-baseline variant and segment attribute (``platform`` for
the levels ``platform=ios``, ``platform=android``, ...; the pooled ``=other`` level is a level
like any other, so the levels partition the units): Cochran's Q on the per-level relative lifts
(:func:`ab_pipelines.stats.heterogeneity.heterogeneity_test`), CUPED within each level where
the experiment has a pre-period and CUPED keeps every level usable, and Benjamini-Hochberg
across the experiment's attributes, metrics and variants at its ``alpha``
(:func:`~ab_pipelines.stats.heterogeneity.heterogeneity_scan`). A flagged test names the levels
that drive it: the fewest levels, most deviant first (each level's z against the others), whose
removal leaves the remaining levels homogeneous.

The segment breakdown itself stays descriptive (never adjusted, never decides); this table is
the test that says when a difference between its rows is more than noise. docs/analysis.md,
"Differential impact in the pipeline".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
from scipy import special

from ab_pipelines.analysis.decision import ALL_SEGMENT, decision_metrics
from ab_pipelines.analysis.results import gold_moments
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.lake.tables import GOLD_HETEROGENEITY
from ab_pipelines.stats.heterogeneity import heterogeneity_scan, heterogeneity_test

__all__ = ["heterogeneity_rows"]


def _usable(t) -> int:
    return int(np.sum(np.isfinite(np.asarray(t.effect_se))))


def heterogeneity_rows(
    exp: Experiment, metrics: Mapping[str, Metric], day: dt.date, stats: pa.Table
) -> pa.Table:
    """gold.heterogeneity rows of one experiment on ``day`` (without provenance columns).

    ``stats`` holds the experiment's gold.sufficient_stats rows of that day. An attribute with
    fewer than two levels that have units in both arms gives no row.
    """
    by_key = {(r["metric"], r["variant"], r["segment"]): r for r in stats.to_pylist()}
    levels: dict[str, list[str]] = {}
    for seg in sorted({s for (_, _, s) in by_key} - {ALL_SEGMENT}):
        attribute, sep, _ = seg.partition("=")
        if sep:
            levels.setdefault(attribute, []).append(seg)
    tests, names = {}, {}
    cuped = exp.analysis.cuped_lookback_days > 0
    for mid in decision_metrics(exp, metrics):
        ratio = metrics[mid].kind == "ratio"
        for vid in exp.variant_ids[1:]:
            for attribute, segs in levels.items():
                have = [
                    s for s in segs if (mid, exp.baseline, s) in by_key and (mid, vid, s) in by_key
                ]
                if len(have) < 2:
                    continue
                a = gold_moments([by_key[(mid, exp.baseline, s)] for s in have], ratio)
                b = gold_moments([by_key[(mid, vid, s)] for s in have], ratio)
                test = heterogeneity_test(a, b, relative=True)
                if cuped:
                    # CUPED within each level: smaller standard errors, the same hypothesis; kept
                    # only where it leaves every level the raw test could use usable.
                    adjusted = heterogeneity_test(a, b, relative=True, cuped=True)
                    if np.isfinite(adjusted.q) and _usable(adjusted) >= _usable(test):
                        test = adjusted
                key = (mid, vid, attribute)
                tests[key], names[key] = test, have
    if not tests:
        return GOLD_HETEROGENEITY.schema.empty_table()
    scan = heterogeneity_scan(tests, alpha=exp.analysis.alpha)
    rows = []
    for i, key in enumerate(scan.keys):
        mid, vid, attribute = key
        t = scan.results[i]
        p_adj = float(scan.p_adjusted[i])
        flagged = bool(np.isfinite(p_adj) and p_adj <= exp.analysis.alpha)
        rows.append(
            dict(
                experiment_id=exp.id,
                metric=mid,
                variant=vid,
                attribute=attribute,
                levels=int(_usable(t)),
                q=_num(t.q),
                p_value=_num(t.p_value),
                p_adjusted=_num(p_adj),
                i2=_num(t.i2),
                pooled_effect=_num(t.pooled_effect),
                flagged=flagged,
                level_names=list(names[key]),
                level_effects=[_num(x) for x in np.asarray(t.effect)],
                level_z=[_num(x) for x in np.asarray(t.deviation_z)],
                drivers=_drivers(t, names[key], exp.analysis.alpha) if flagged else [],
                day=day,
            )
        )
    schema = GOLD_HETEROGENEITY.schema
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


def _drivers(t, names: list[str], alpha: float) -> list[str]:
    """The levels that drive a flagged test, most deviant first: the fewest levels, taken in
    order of |z| (each level against the others), whose removal leaves the other levels
    homogeneous (Cochran's Q of the rest not rejected at ``alpha``). With one level far from two
    that agree, the pooled effect sits between them and all three deviate from it; this names
    the one. When no such set leaves two levels or more, the Bonferroni-significant levels."""
    d, se = np.asarray(t.effect), np.asarray(t.effect_se)
    z = np.abs(np.nan_to_num(np.asarray(t.deviation_z), nan=0.0))
    ok = np.isfinite(d) & np.isfinite(se) & (se > 0)
    order = [i for i in np.argsort(-z, kind="stable") if ok[i]]
    for k in range(1, len(order) - 1):
        rest = order[k:]
        w = 1.0 / se[rest] ** 2
        pooled = np.sum(w * d[rest]) / np.sum(w)
        q = float(np.sum(w * (d[rest] - pooled) ** 2))
        if special.chdtrc(len(rest) - 1, q) > alpha:
            return [names[i] for i in order[:k]]
    significant = np.asarray(t.drivers(alpha), dtype=bool)
    return [names[i] for i in order if significant[i]]


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
