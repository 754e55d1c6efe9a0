"""Differential impact: does an experiment's effect differ across the levels of a segment attribute?

The segment breakdown (one comparison per level: ``platform=ios``, ``platform=android``, …) is
descriptive; this module tests it. Per level l the effect d_l and its standard error s_l come from
:func:`~ab_pipelines.stats.compare.compare` on that level's baseline and treatment moments (the
segment rows of ``gold.sufficient_stats``). The levels partition the units, so the d_l are
independent, and the homogeneity hypothesis H0: d_1 = … = d_L is tested with Cochran's Q
(Cochran 1954, "The combination of estimates from different experiments", Biometrics 10):

    w_l = 1/s_l²,   d̄ = Σ w_l d_l / Σ w_l,   Q = Σ w_l (d_l − d̄)²  ~  χ²_{L−1} under H0,

the Wald test of equal effects. Its size on the scale of the data is I² = max(0, (Q − (L−1))/Q),
the share of the spread of the d_l beyond what sampling noise explains (Higgins & Thompson 2002,
"Quantifying heterogeneity in a meta-analysis", Stat. Med. 21), and τ² = max(0, (Q − (L−1)) /
(Σw − Σw²/Σw)), the between-level variance of DerSimonian & Laird (1986, Control. Clin. Trials 7).

Which levels drive it: the standardised deviation z_l = (d_l − d̄)/√(s_l² − 1/Σw) (Var(d_l − d̄) =
s_l² − 1/Σw under H0; Viechtbauer & Cheung 2010, "Outlier and influence diagnostics for
meta-analysis", Res. Synth. Methods 1). It equals the z of "this level against all the others"
((d_l − d̄_rest)/√(s_l² + 1/Σ_{rest} w), the others pooled by inverse variance), which is the test
Statsig's Differential Impact Detection runs per segment
(https://docs.statsig.com/experiments-plus/differential-impact-detection, Welch's t-test of the
segment's effect against the rest's, Bonferroni-corrected). Here the omnibus Q is the test, and
the z_l name the levels once a test is flagged.

Across attributes, metrics and variants, :func:`heterogeneity_scan` controls the false discovery
rate with Benjamini–Hochberg (:func:`~ab_pipelines.stats.corrections.adjust_pvalues`). This module
also holds the pieces that :mod:`ab_pipelines.stats.interactions` shares (:class:`Scan`, stacking).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np
from scipy import special

from ab_pipelines.stats.compare import compare
from ab_pipelines.stats.corrections import adjust_pvalues
from ab_pipelines.stats.moments import Moments, RatioMoments

__all__ = ["HeterogeneityTest", "Scan", "heterogeneity_scan", "heterogeneity_test"]

M = TypeVar("M", Moments, RatioMoments)

_FIELDS = {kind: tuple(f.name for f in fields(kind)) for kind in (Moments, RatioMoments)}


@dataclass(frozen=True)
class HeterogeneityTest:
    """Cochran's Q test that one comparison's effect is the same in every level of an attribute.

    Fields are floats for one test, numpy arrays (one element per test) for a batch; the per-level
    fields have the levels on the last axis. A value that cannot be computed is NaN.

    Attributes:
        q: Cochran's Q, Σ w_l (d_l − d̄)².
        df: L − 1, L the levels whose effect could be computed.
        p_value: P(χ²_df ≥ q); NaN with fewer than two usable levels.
        i2: I², max(0, (q − df)/q) (0 when q = 0).
        tau2: DerSimonian–Laird between-level variance of the effect.
        pooled_effect: d̄, the inverse-variance (fixed-effect) average of the level effects.
        pooled_se: 1/√Σw.
        effect: d_l per level (relative lift or absolute difference, as ``compare`` gives it).
        effect_se: s_l per level.
        deviation_z: (d_l − d̄)/√(s_l² − 1/Σw) per level: the level against all the others.
        relative: whether the effects are relative lifts.
    """

    q: Any
    df: Any
    p_value: Any
    i2: Any
    tau2: Any
    pooled_effect: Any
    pooled_se: Any
    effect: Any
    effect_se: Any
    deviation_z: Any
    relative: bool

    @property
    def driver(self) -> Any:
        """Index of the level with the largest |deviation_z| (−1 where there is none)."""
        return _argmax_abs(self.deviation_z)

    def drivers(self, alpha: float = 0.05) -> Any:
        """Levels whose |deviation_z| is significant at ``alpha``, Bonferroni over the test's levels."""
        return _bonferroni(self.deviation_z, alpha)


@dataclass(frozen=True)
class Scan:
    """Many tests (interaction or heterogeneity) corrected together with Benjamini–Hochberg.

    Attributes:
        keys: the caller's key of each test, in the order given.
        results: the test of each key (:class:`~ab_pipelines.stats.interactions.InteractionTest`
            or :class:`HeterogeneityTest`).
        p_value: the raw p-values, in key order.
        p_adjusted: BH-adjusted p-values (NaN tests are left out of the family and stay NaN).
        alpha: the false discovery rate targeted.
    """

    keys: tuple
    results: tuple
    p_value: Any
    p_adjusted: Any
    alpha: float

    @property
    def flagged(self) -> tuple:
        """The keys whose adjusted p-value is at most ``alpha``, most significant first."""
        hit = np.flatnonzero(self.p_adjusted <= self.alpha)
        return tuple(self.keys[i] for i in hit[np.argsort(self.p_value[hit], kind="stable")])

    def __getitem__(self, key: Hashable) -> Any:
        """The test of ``key``."""
        return self.results[self.keys.index(key)]


def heterogeneity_test(
    baseline: M | Sequence[M],
    treatment: M | Sequence[M],
    relative: bool = True,
    cuped: bool = False,
) -> HeterogeneityTest:
    """Cochran's Q test that the effect of ``treatment`` over ``baseline`` is equal across levels.

    Per level, ``compare(baseline_l, treatment_l, relative=relative)`` (Welch, delta method for
    ratios and relative lifts) gives d_l and s_l; Q, I², τ², the pooled effect and the
    standardised deviations follow (module docstring). Relative lifts are the default, the
    scorecard's scale: levels whose baselines differ (a country converting twice as often) but
    whose lift is the same are homogeneous. ``relative=False`` tests absolute differences.

    Degenerate inputs never raise: a level whose comparison is NaN (fewer than 2 units in an arm,
    zero variance, a baseline mean of 0 when relative) is left out (its effect, se and z are NaN,
    and L counts the others); with fewer than two usable levels the test is NaN.

    Args:
        baseline: the baseline arm's moments per level: a sequence of Moments (or RatioMoments),
            one per level, or one whose last axis is the level (leading axes: one test each).
        treatment: the treatment arm's moments of the same levels, in the same order.
        relative: test relative lifts (default) instead of absolute differences.
        cuped: CUPED within each level (``compare(..., cuped=True)``; needs the pre-period
            fields, which the segment rows of ``gold.sufficient_stats`` carry): smaller s_l, the
            same hypothesis.

    Returns:
        A :class:`HeterogeneityTest`.

    Examples:
        >>> a = [Moments(4000, 400.0, 400.0), Moments(4000, 800.0, 800.0), Moments(4000, 600.0, 600.0)]
        >>> b = [Moments(4000, 440.0, 440.0), Moments(4000, 880.0, 880.0), Moments(4000, 540.0, 540.0)]
        >>> h = heterogeneity_test(a, b)
        >>> round(h.q, 2), h.df, round(h.p_value, 4), round(h.i2, 3), h.driver
        (9.93, 2, 0.007, 0.799, 2)
        >>> h.effect.round(3).tolist(), h.drivers().tolist()
        ([0.1, 0.1, -0.1], [False, False, True])
    """
    a, b = _levels(baseline), _levels(treatment)
    c = compare(a, b, relative=relative, cuped=cuped)
    d, se = np.asarray(c.effect, dtype=np.float64), np.asarray(c.se, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ok = np.isfinite(d) & np.isfinite(se) & (se > 0)
        w = np.where(ok, 1.0 / np.where(ok, se, 1.0) ** 2, 0.0)
        dz = np.where(ok, d, 0.0)
        w_sum = w.sum(-1)
        pooled = (w * dz).sum(-1) / w_sum
        q = (w * (dz - pooled[..., None]) ** 2).sum(-1)
        levels = ok.sum(-1)
        df = (levels - 1).astype(np.float64)
        usable = levels >= 2
        q = np.where(usable, q, np.nan)
        df = np.where(usable, df, np.nan)
        p = special.chdtrc(df, q)
        i2 = np.where(q > 0, np.maximum(0.0, (q - df) / q), np.where(usable, 0.0, np.nan))
        tau2 = np.maximum(0.0, (q - df) / (w_sum - (w**2).sum(-1) / w_sum))
        z = (d - pooled[..., None]) / np.sqrt(se**2 - 1.0 / w_sum[..., None])
        z = np.where(ok & usable[..., None], z, np.nan)
        pooled_se = np.where(usable, 1.0 / np.sqrt(w_sum), np.nan)
        pooled = np.where(usable, pooled, np.nan)
    scalar = np.ndim(q) == 0
    out = dict(q=q, df=df, p_value=p, i2=i2, tau2=tau2, pooled_effect=pooled, pooled_se=pooled_se)
    out = {k: float(v) if scalar else np.asarray(v, dtype=np.float64) for k, v in out.items()}
    if scalar and np.isfinite(out["df"]):
        out["df"] = int(out["df"])
    return HeterogeneityTest(
        **out,
        effect=np.where(ok, d, np.nan),
        effect_se=np.where(ok, se, np.nan),
        deviation_z=z,
        relative=relative,
    )


def heterogeneity_scan(
    levels: Mapping[Hashable, tuple[M | Sequence[M], M | Sequence[M]] | HeterogeneityTest],
    alpha: float = 0.05,
    relative: bool = True,
    cuped: bool = False,
) -> Scan:
    """Heterogeneity tests of many (experiment, variant, metric, attribute), FDR-corrected together.

    Args:
        levels: per key (e.g. ``(experiment, variant, metric, attribute)``) the pair
            ``(baseline levels, treatment levels)`` as :func:`heterogeneity_test` takes them (one
            test per key: no leading axes), or an already computed :class:`HeterogeneityTest`.
            Tests with the same moments type and number of levels are computed in one batch.
        alpha: the false discovery rate targeted by Benjamini–Hochberg.
        relative: passed to :func:`heterogeneity_test`.
        cuped: passed to :func:`heterogeneity_test`.

    Returns:
        A :class:`Scan`; ``scan.flagged`` lists the keys with a differential impact, and
        ``scan[key].drivers()`` the levels that drive it.

    Examples:
        >>> a = [Moments(4000, 400.0, 400.0), Moments(4000, 800.0, 800.0)]
        >>> same = [Moments(4000, 440.0, 440.0), Moments(4000, 880.0, 880.0)]
        >>> apart = [Moments(4000, 480.0, 480.0), Moments(4000, 720.0, 720.0)]
        >>> s = heterogeneity_scan({("exp", "platform"): (a, apart), ("exp", "country"): (a, same)})
        >>> s.flagged, s.p_adjusted.round(4).tolist()
        ((('exp', 'platform'),), [0.0012, 1.0])
    """
    return _scan(
        levels,
        alpha,
        HeterogeneityTest,
        lambda pair: (_levels(pair[0]), _levels(pair[1])),
        lambda a, b: heterogeneity_test(a, b, relative=relative, cuped=cuped),
    )


def _levels(x: M | Sequence[M]) -> M:
    """Per-level moments as one Moments whose last axis is the level."""
    return x if isinstance(x, Moments | RatioMoments) else _stack(list(x), -1)


def _full(m: M) -> M:
    """The moments with every present field broadcast to their common shape, as float64 arrays."""
    names = [k for k in _FIELDS[type(m)] if getattr(m, k) is not None]
    arrays = [getattr(m, k) for k in names]
    first = arrays[0]
    if all(
        isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == np.shape(first)
        for x in arrays
    ):
        return m
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in arrays))
    values: dict[str, Any] = dict.fromkeys(_FIELDS[type(m)])
    values.update(zip(names, arrays, strict=True))
    return type(m)(**values)


def _stack(parts: Sequence[M], axis: int) -> M:
    """Moments of the same type stacked on a new ``axis`` (a field absent in any part is None)."""
    kind = type(parts[0])
    if any(type(p) is not kind for p in parts):
        raise TypeError("cannot stack Moments with RatioMoments")
    parts = [_full(p) for p in parts]
    values = {}
    for name in _FIELDS[kind]:
        xs = [getattr(p, name) for p in parts]
        values[name] = None if any(x is None for x in xs) else np.stack(xs, axis)
    return kind(**values)


def _take(result: Any, i: int) -> Any:
    """Test ``i`` of a batch of tests (every array field has the batch on its first axis)."""
    values = {}
    for f in fields(result):
        x = getattr(result, f.name)
        if isinstance(x, np.ndarray) and x.ndim > 0:
            x = x[i]
            x = float(x) if x.ndim == 0 else x
        values[f.name] = x
    if isinstance(values.get("df"), float) and np.isfinite(values["df"]):
        values["df"] = int(values["df"])
    return type(result)(**values)


def _scan(
    entries: Mapping[Hashable, Any],
    alpha: float,
    done: type,
    prepare: Callable[[Any], tuple],
    run: Callable[..., Any],
) -> Scan:
    """Run ``run`` once per group of same-shaped entries, then Benjamini–Hochberg over all keys."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    results: dict[Hashable, Any] = {}
    groups: dict[tuple, list[tuple[Hashable, tuple]]] = {}
    for key, value in entries.items():
        if isinstance(value, done):
            results[key] = value
            continue
        prepared = tuple(_full(m) for m in prepare(value))
        shape = tuple((type(m), np.shape(m.n)) for m in prepared)
        groups.setdefault(shape, []).append((key, prepared))
    for members in groups.values():
        stacked = [_stack([p[i] for _, p in members], 0) for i in range(len(members[0][1]))]
        batch = run(*stacked)
        for i, (key, _) in enumerate(members):
            results[key] = _take(batch, i)
    keys = tuple(entries)
    ordered = tuple(results[k] for k in keys)
    p = np.array([r.p_value for r in ordered], dtype=np.float64)
    return Scan(keys, ordered, p, adjust_pvalues(p, method="bh"), alpha)


def _argmax_abs(z: Any) -> Any:
    """Index of the largest |z| on the last axis; −1 where every z is NaN."""
    a = np.abs(np.asarray(z, dtype=np.float64))
    none = np.all(np.isnan(a), axis=-1)
    idx = np.where(none, -1, np.argmax(np.where(np.isnan(a), -1.0, a), axis=-1))
    return int(idx) if np.ndim(idx) == 0 else idx


def _bonferroni(z: Any, alpha: float) -> Any:
    """|z| beyond the two-sided normal quantile at alpha/L, L the finite z on the last axis."""
    z = np.asarray(z, dtype=np.float64)
    count = np.sum(np.isfinite(z), axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = -special.ndtri(alpha / (2.0 * count))
        return np.abs(z) > crit
