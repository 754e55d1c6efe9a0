"""Interactions between concurrent experiments: does the effect of A depend on B's arm?

Experiments in different layers overlap by design: a unit is in arm i of experiment A (k arms,
arm 0 the baseline) and arm j of experiment B (m arms) independently. The units of both cut into
k × m cells; cell (i, j) is summarised by its sufficient statistics (a
:class:`~ab_pipelines.stats.moments.Moments` or
:class:`~ab_pipelines.stats.moments.RatioMoments`), from which its value v_ij (mean, proportion
or Σnum/Σden) and the variance of that value σ²_ij come (compare's delta method: Deng, Knoblich &
Lu 2018, KDD). The cells hold disjoint units, so the v_ij are independent.

The effect of A's arm i within B's arm j is e_ij = v_ij − v_0j (``relative=False``, the default)
or the lift e_ij = v_ij / v_0j − 1 (``relative=True``). H0, no interaction, says the effect of A is
the same in every arm of B: the (k − 1)(m − 1) contrasts

    g_ij = e_ij − e_i0,   i = 1..k−1, j = 1..m−1

are all 0. Their covariance follows from the cells' independence: Cov(e_ij, e_i'j') = 0 for
j ≠ j', so Cov(g) = blockdiag(E_1 … E_{m−1}) + E_0 in every block, E_j the covariance of
A's effects within B's arm j (delta method, ∂e/∂v). The Wald statistic

    W = gᵀ Cov(g)⁻¹ g  ~  χ²_{(k−1)(m−1)} under H0

is, on the absolute scale, the test of the A×B terms of a regression of the metric on A, B and
A×B dummies with heteroskedasticity-robust (HC2) covariance: the same contrasts in another basis
(tests/stats/test_interactions.py checks it against statsmodels). For 2 × 2 it is the z-test of
Δ = (v_11 − v_01) − (v_10 − v_00), Statsig's interaction effect
(https://docs.statsig.com/experiments-plus/interaction-detection), and for k = 2 it is Cochran's Q
of A's effects across B's arms (:mod:`ab_pipelines.stats.heterogeneity`). Microsoft's ExP runs
this test for every pair of A/B tests running on a day and every metric (Kohavi, Tang & Xu 2020,
"Trustworthy Online Controlled Experiments", ch. 4 on concurrent experiments; ExP's "A/B
Interactions: A Call to Relax", 2023, which splits one test's effect by the other's arm and applies
a chi-square test to the difference; Kohavi et al. 2013, "Online controlled experiments at large
scale", KDD). :func:`interaction_scan` does the same and controls the false discovery rate over
all (pair, metric) tests with Benjamini–Hochberg (:func:`~ab_pipelines.stats.corrections.adjust_pvalues`).

The result also carries the Pearson χ² test of independence of the k × m unit counts, a *traffic*
interaction (being in one experiment's arm changes who reaches the other's exposure), as Vista's
interaction checks run it beside the metric test (Vermeer 2023, "Detecting interaction effects in
online experimentation", https://www.lukasvermeer.nl/publications/2023/06/26/detecting-interaction-effects-in-online-experimentation.html).

Cells for every pair at once come from one grouping of units by their assignment vector
(:func:`interaction_cells`): sums add up over disjoint units.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ab_pipelines.stats.compare import _arm, _gradients, _quad
from ab_pipelines.stats.heterogeneity import Scan, _argmax_abs, _bonferroni, _full, _scan, _stack
from ab_pipelines.stats.moments import Moments, RatioMoments

__all__ = ["InteractionTest", "interaction_cells", "interaction_scan", "interaction_test"]

M = TypeVar("M", Moments, RatioMoments)

# A covariance whose smallest eigenvalue is below this share of its largest is treated as singular.
_RCOND = 1e-12


@dataclass(frozen=True)
class InteractionTest:
    """The Wald test that the effect of experiment A does not depend on the arm of experiment B.

    Scalar fields are floats for one test and arrays (one element per test) for a batch; the
    per-cell fields end with the axes named below. A value that cannot be computed is NaN.

    Attributes:
        statistic: the Wald χ² statistic W.
        df: (k − 1)(m − 1).
        p_value: P(χ²_df ≥ W).
        effect: e_ij, the effect of A's arm i + 1 (against A's arm 0) within B's arm j, axes
            (k − 1, m): absolute difference, or relative lift when ``relative``.
        effect_se: standard error of ``effect``.
        contrast: g_ij = e_i,j − e_i,0, how much A's effect in B's arm j + 1 differs from it in
            B's arm 0, axes (k − 1, m − 1): the interaction contrasts the test is on.
        contrast_se: standard error of ``contrast``.
        cell_n: units per cell, axes (k, m).
        cell_mean: value per cell (mean, proportion or Σnum/Σden), axes (k, m).
        traffic_p_value: Pearson χ² test of independence of ``cell_n`` (a traffic interaction);
            NaN when a row or column of the table is empty.
        relative: whether effects and contrasts are relative lifts.
    """

    statistic: Any
    df: int
    p_value: Any
    effect: Any
    effect_se: Any
    contrast: Any
    contrast_se: Any
    cell_n: Any
    cell_mean: Any
    traffic_p_value: Any
    relative: bool

    @property
    def contrast_z(self) -> Any:
        """contrast / contrast_se."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.contrast) / np.asarray(self.contrast_se)

    @property
    def driver(self) -> Any:
        """(A's arm, B's arm) of the contrast with the largest |z|, both ≥ 1; (−1, −1) if none.

        The cells behind it are (0, 0), (a, 0), (0, b) and (a, b).
        """
        z = np.asarray(self.contrast_z)
        flat = _argmax_abs(z.reshape(z.shape[:-2] + (-1,)))
        a, b = np.divmod(flat, z.shape[-1])
        found = np.asarray(flat) >= 0
        a, b = np.where(found, a + 1, -1), np.where(found, b + 1, -1)
        return (int(a), int(b)) if np.ndim(a) == 0 else (a, b)

    def drivers(self, alpha: float = 0.05) -> Any:
        """Contrasts significant at ``alpha``, Bonferroni over the test's contrasts, axes (k−1, m−1)."""
        z = np.asarray(self.contrast_z)
        return _bonferroni(z.reshape(z.shape[:-2] + (-1,)), alpha).reshape(z.shape)


def interaction_test(cells: M | Sequence[Sequence[M]], relative: bool = False) -> InteractionTest:
    """Test whether the effect of experiment A depends on the arm of experiment B.

    Args:
        cells: the k × m cells, units in A's arm i and B's arm j, arm 0 each experiment's
            baseline: a Moments (or RatioMoments) whose last two axes are (A's arm, B's arm) and
            whose leading axes, if any, are separate tests; or nested sequences ``cells[i][j]``.
        relative: test A's relative lifts (v_ij/v_0j − 1) instead of its absolute effects. The
            default, absolute, is the A×B term of a linear model, as Microsoft and Statsig test
            it; relative asks whether A's lift depends on B, so B moving the baseline alone is
            not an interaction.

    Returns:
        An :class:`InteractionTest`.

    Degenerate inputs never raise: where a cell has fewer than 2 units, a non-finite value, a
    covariance of the contrasts that is singular (e.g. every cell without variance), or (relative)
    a baseline value of 0, the statistic, p-value, effects and contrasts are NaN. Pre-period
    fields are ignored (no CUPED).

    Examples:
        Conversions: A's effect is +0.02 when B is in control and 0 when B is treated.

        >>> c = [[Moments(5000, 500.0, 500.0), Moments(5000, 500.0, 500.0)],
        ...      [Moments(5000, 600.0, 600.0), Moments(5000, 500.0, 500.0)]]
        >>> t = interaction_test(c)
        >>> round(t.statistic, 2), t.df, round(t.p_value, 4)
        (5.32, 1, 0.021)
        >>> t.effect.round(3).tolist(), t.contrast.round(3).tolist(), t.driver
        ([[0.02, 0.0]], [[-0.02]], (1, 1))
    """
    m = _cells(cells)
    if np.ndim(m.n) < 2:
        raise ValueError("cells need two trailing axes: (A's arm, B's arm)")
    k, mb = np.shape(m.n)[-2:]
    if k < 2 or mb < 2:
        raise ValueError(f"each experiment needs at least 2 arms, got {k} x {mb} cells")
    ratio = isinstance(m, RatioMoments)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n, mu, cov = _arm(m, 2 if ratio else 1)
        v, _, g, _ = _gradients(mu, 0.0, ratio, False)
        s = _quad(g, cov, g) / n
        statistic, effect, effect_se, contrast, contrast_se = _wald(v, s, relative)
        df = (k - 1) * (mb - 1)
        p = special.chdtrc(df, statistic)
        traffic = _traffic(n, df)
    scalar = np.ndim(statistic) == 0
    conv = lambda x: float(x) if scalar else np.asarray(x, dtype=np.float64)  # noqa: E731
    return InteractionTest(
        statistic=conv(statistic),
        df=df,
        p_value=conv(p),
        effect=effect,
        effect_se=effect_se,
        contrast=contrast,
        contrast_se=contrast_se,
        cell_n=n,
        cell_mean=v,
        traffic_p_value=conv(traffic),
        relative=relative,
    )


def interaction_scan(
    cells: Mapping[Hashable, M | Sequence[Sequence[M]] | InteractionTest],
    alpha: float = 0.05,
    relative: bool = False,
) -> Scan:
    """Interaction tests of many (pair of experiments, metric), FDR-corrected together.

    Args:
        cells: per key (e.g. ``(experiment_a, experiment_b, metric)``) the k × m cells of one
            test, as :func:`interaction_test` takes them without leading axes, or an already
            computed :class:`InteractionTest`. Tests with the same moments type and k × m are
            computed in one vectorised batch. Pairs that share no units give NaN and are left out
            of the family.
        alpha: the false discovery rate targeted by Benjamini–Hochberg.
        relative: passed to :func:`interaction_test`.

    Returns:
        A :class:`~ab_pipelines.stats.heterogeneity.Scan`; ``scan.flagged`` lists the keys with
        an interaction, ``scan[key].driver`` its strongest contrast.

    Examples:
        >>> flat = [[Moments(5000, 500.0, 500.0)] * 2] * 2
        >>> hit = [[Moments(5000, 500.0, 500.0), Moments(5000, 500.0, 500.0)],
        ...        [Moments(5000, 600.0, 600.0), Moments(5000, 500.0, 500.0)]]
        >>> s = interaction_scan({("a", "b", "conversion"): hit, ("a", "c", "conversion"): flat})
        >>> s.flagged, s.p_adjusted.round(4).tolist()
        ((('a', 'b', 'conversion'),), [0.0421, 1.0])
    """
    return _scan(
        cells,
        alpha,
        InteractionTest,
        lambda c: (_cells(c),),
        lambda c: interaction_test(c, relative=relative),
    )


def interaction_cells(arms: ArrayLike, stats: M, n_arms: int | None = None) -> M:
    """The cells of every pair of experiments from sums over groups of units assigned alike.

    Group the units of a day by their assignment vector (their arm in each of E concurrent
    experiments) and sum each group (one ``GROUP BY`` over the unit-metric rows); the cell (i, j)
    of the pair (e, f) is then the sum of the groups in arm i of e and arm j of f, because
    sufficient statistics add up over disjoint units. One matrix product gives all pairs.

    Args:
        arms: (G, E) integers, the arm of group g's units in experiment e, −1 when they are not
            in it (not exposed, or a mutually exclusive experiment of the same layer).
        stats: the groups' sums, fields with the group on the last axis (..., G); leading axes
            (e.g. metrics) are kept.
        n_arms: K, the arms per experiment (the largest arm + 1 by default); an experiment with
            fewer arms has empty (n = 0) cells beyond them.

    Returns:
        Moments of the same type with fields (..., E, E, K, K): ``[..., e, f, i, j]`` is the cell
        of units in arm i of e and arm j of f. Pass ``cells[..., e, f, :k_e, :k_f]`` to
        :func:`interaction_test` for each pair e < f.

    Examples:
        >>> arms = [[0, 0], [0, 1], [1, 0], [1, -1]]
        >>> g = Moments(n=[10, 20, 30, 40], sum=[1.0, 2.0, 3.0, 4.0], sum_sq=[1.0, 2.0, 3.0, 4.0])
        >>> interaction_cells(arms, g).n[0, 1].tolist()
        [[10.0, 20.0], [30.0, 0.0]]
    """
    arms = np.asarray(arms, dtype=np.int64)
    if arms.ndim != 2:
        raise ValueError(f"arms must be (groups, experiments), got shape {arms.shape}")
    groups, experiments = arms.shape
    k = int(arms.max(initial=-1)) + 1 if n_arms is None else int(n_arms)
    onehot = (arms[:, :, None] == np.arange(k)).reshape(groups, experiments * k).astype(np.float64)
    stats = _full(stats)
    values: dict[str, Any] = {}
    for f in fields(stats):
        x = getattr(stats, f.name)
        if x is None:
            values[f.name] = None
            continue
        cells = np.swapaxes(onehot * x[..., :, None], -1, -2) @ onehot  # (..., E·K, E·K)
        cells = cells.reshape(x.shape[:-1] + (experiments, k, experiments, k))
        values[f.name] = np.swapaxes(cells, -3, -2)
    return type(stats)(**values)


def _cells(cells: M | Sequence[Sequence[M]]) -> M:
    """Cells as one Moments with (A's arm, B's arm) as the last two axes."""
    if isinstance(cells, Moments | RatioMoments):
        return _full(cells)
    return _stack([_stack(list(row), -1) for row in cells], -2)


def _wald(v: Any, s: Any, relative: bool) -> tuple[Any, Any, Any, Any, Any]:
    """W, A's effects within B's arms and the interaction contrasts, from cell values and variances.

    v and s: (..., k, m) values and variances of the cells.
    """
    k, mb = v.shape[-2:]
    v0, s0 = v[..., :1, :], s[..., :1, :]
    vi, si = v[..., 1:, :], s[..., 1:, :]
    if relative:
        effect = vi / v0 - 1.0
        da = np.broadcast_to(1.0 / v0, vi.shape)  # ∂e_ij/∂v_ij
        db = -vi / v0**2  # ∂e_ij/∂v_0j
    else:
        effect = vi - v0
        da, db = np.ones_like(vi), -np.ones_like(vi)
    effect_se = np.sqrt(da**2 * si + db**2 * s0)
    # E_j: covariance of A's k−1 effects within B's arm j (they share the baseline cell v_0j).
    t = lambda x: np.moveaxis(x, -1, -2)  # noqa: E731  (..., m, k−1)
    da_t, db_t, si_t = t(da), t(db), t(si)
    s0_t = t(np.broadcast_to(s0, vi.shape))[..., :1]  # (..., m, 1)
    e_cov = np.eye(k - 1) * (da_t**2 * si_t)[..., None, :] + s0_t[..., None] * (
        db_t[..., :, None] * db_t[..., None, :]
    )
    contrast = effect[..., :, 1:] - effect[..., :, :1]
    contrast_se = np.sqrt(
        np.diagonal(e_cov[..., 1:, :, :], axis1=-2, axis2=-1)
        + np.diagonal(e_cov[..., :1, :, :], axis1=-2, axis2=-1)
    )
    contrast_se = t(contrast_se)
    # Cov(g) over the flattened (j, i): E_j on the diagonal blocks, E_0 added to every block.
    q = (mb - 1) * (k - 1)
    blocks = np.einsum("jl,...jab->...jalb", np.eye(mb - 1), e_cov[..., 1:, :, :])
    cov_g = (blocks + e_cov[..., 0, None, :, None, :]).reshape(v.shape[:-2] + (q, q))
    g = t(contrast).reshape(v.shape[:-2] + (q,))
    ok = np.all(np.isfinite(cov_g), axis=(-2, -1)) & np.all(np.isfinite(g), axis=-1)
    safe = np.where(ok[..., None, None], cov_g, np.eye(q))
    eig = np.linalg.eigvalsh(safe)
    ok &= eig[..., 0] > _RCOND * np.maximum(eig[..., -1], 0.0)
    ok &= eig[..., -1] > 0
    safe = np.where(ok[..., None, None], safe, np.eye(q))
    g_safe = np.where(ok[..., None], g, 0.0)
    statistic = np.einsum(
        "...i,...i->...", g_safe, np.linalg.solve(safe, g_safe[..., None])[..., 0]
    )
    statistic = np.where(ok, statistic, np.nan)
    cell_ok = ok[..., None, None]
    nan = lambda x: np.where(cell_ok, x, np.nan)  # noqa: E731
    return statistic, nan(effect), nan(effect_se), nan(contrast), nan(contrast_se)


def _traffic(n: Any, df: int) -> Any:
    """Pearson χ² p-value of independence of the k × m counts (last two axes)."""
    total = n.sum(axis=(-2, -1), keepdims=True)
    expected = n.sum(-1, keepdims=True) * n.sum(-2, keepdims=True) / total
    ok = np.all(expected > 0, axis=(-2, -1))
    chi2 = np.sum((n - expected) ** 2 / np.where(expected > 0, expected, 1.0), axis=(-2, -1))
    return np.where(ok, special.chdtrc(df, chi2), np.nan)
