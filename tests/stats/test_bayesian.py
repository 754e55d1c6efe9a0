"""bayesian_compare: case by case against gbstats, against direct computations on raw arrays, and
by simulation on sufficient statistics (run with ``pytest -s`` to see the measured numbers)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy import stats as sps

from ab_pipelines.stats import (
    BayesianComparison,
    Moments,
    Prior,
    RatioMoments,
    bayesian_compare,
    bayesian_decision,
    compare,
)
from tests.stats.test_peer_gbstats import as_json, peer_python
from tests.stats.test_simulation import EXPERIMENTS, _band, _conversions, _normal_arm

FIELDS = (
    "effect",
    "sd",
    "ci_low",
    "ci_high",
    "chance_to_win",
    "risk_control",
    "risk_treatment",
)


# --- against gbstats 0.8.0, case by case -----------------------------------------------------


def _peer_cases(rng, per_kind=40):
    """~40 random cases per kind × {relative, absolute} × {flat, informative prior}."""
    out = []
    for _ in range(per_kind):
        n_a, n_b = rng.integers(200, 5000, size=2)
        lift = rng.uniform(-0.08, 0.12)
        x_a, x_b = rng.gamma(2.0, 3.0, n_a), rng.gamma(2.0, 3.0, n_b)
        y_a = 0.6 * x_a + rng.gamma(2.0, 2.0, n_a)
        y_b = (0.6 * x_b + rng.gamma(2.0, 2.0, n_b)) * (1 + lift)
        d_a, d_b = rng.poisson(3, n_a) + 1, rng.poisson(3, n_b) + 1
        # Conversions: gbstats' ProportionStatistic has variance p(1 − p), Moments the sample
        # variance n/(n − 1)·p(1 − p); n of several thousand keeps the gap below 4 decimals.
        m_a, m_b = rng.integers(4000, 40000, size=2)
        p = rng.uniform(0.02, 0.5)
        c_a = (rng.random(m_a) < p).astype(float)
        c_b = (rng.random(m_b) < min(p * (1 + lift), 1.0)).astype(float)
        arms = {
            "mean": (Moments.from_values(y_a), Moments.from_values(y_b)),
            "proportion": (Moments.from_values(c_a), Moments.from_values(c_b)),
            "binary": (Moments.from_values(c_a), Moments.from_values(c_b)),
            "ratio": (RatioMoments.from_values(y_a, d_a), RatioMoments.from_values(y_b, d_b)),
            "cuped": (Moments.from_values(y_a, x_a), Moments.from_values(y_b, x_b)),
        }
        for kind, (a, b) in arms.items():
            for relative in (True, False):
                for proper in (False, True):
                    on_relative = bool(rng.random() < 0.75)  # GrowthBook's own setting
                    scale = 1.0 if on_relative else float(a.mean)
                    prior = Prior(
                        mean=float(rng.uniform(-0.05, 0.05)) * scale,
                        variance=(float(rng.uniform(0.01, 0.3)) * scale) ** 2,
                        proper=proper,
                        relative=on_relative,
                    )
                    alpha = float(rng.choice([0.05, 0.1, 0.2]))
                    inverse = bool(rng.random() < 0.25)
                    out.append((kind, relative, prior, alpha, inverse, a, b))
    return out


@pytest.mark.slow
def test_agrees_with_gbstats_case_by_case():
    rng = np.random.default_rng(20261125)
    todo = _peer_cases(rng)
    payload = [
        {
            "kind": kind,
            "relative": relative,
            "inverse": inverse,
            "alpha": alpha,
            "prior": {
                "mean": prior.mean,
                "variance": prior.variance,
                "proper": prior.proper,
                "type": "relative" if prior.relative else "absolute",
            },
            "a": as_json("mean" if kind in ("proportion", "binary") else kind, a),
            "b": as_json("mean" if kind in ("proportion", "binary") else kind, b),
        }
        for kind, relative, prior, alpha, inverse, a, b in todo
    ]
    proc = subprocess.run(
        [peer_python(), Path(__file__).with_name("gbstats_bayes_peer.py")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    worst: dict[tuple[str, str], float] = {}
    for (kind, relative, prior, alpha, inverse, a, b), peer in zip(todo, theirs, strict=True):
        assert peer["error"] is None, (kind, peer["error"])
        ours = bayesian_compare(
            a,
            b,
            relative=relative,
            cuped=kind == "cuped",
            prior=prior,
            alpha=alpha,
            higher_is_better=not inverse,
        )
        for field in FIELDS:
            mine, other = getattr(ours, field), float(peer[field])
            gap = abs(mine - other)
            worst[kind, field] = max(worst.get((kind, field), 0.0), gap)
            assert gap < 5e-5, (kind, relative, prior, alpha, inverse, field, mine, other)
    print(f"\nmax |ours − gbstats| over {len(todo)} cases (per kind, per field):")
    for kind in ("mean", "proportion", "binary", "ratio", "cuped"):
        print(f"  {kind:10s} " + "  ".join(f"{f}={worst[kind, f]:.1e}" for f in FIELDS))
    # The exact kinds agree to rounding; only the proportion's variance convention differs.
    exact = max(v for (k, _), v in worst.items() if k != "proportion")
    assert exact < 1e-9


# --- against direct computations on raw arrays ------------------------------------------------


def _raw(seed=0, n_a=3000, n_b=3200, lift=0.04):
    rng = np.random.default_rng(seed)
    x_a, x_b = rng.gamma(2.0, 5.0, n_a), rng.gamma(2.0, 5.0, n_b)
    y_a = 0.7 * x_a + rng.gamma(3.0, 2.0, n_a)
    y_b = (0.7 * x_b + rng.gamma(3.0, 2.0, n_b)) * (1 + lift)
    return (y_a, x_a), (y_b, x_b)


def _normal_summary(m, s, alpha=0.05):
    """Interval, chance to win and both expected losses of N(m, s²), straight from scipy."""
    post = sps.norm(m, s)
    lo, hi = post.interval(1 - alpha)
    return {
        "effect": m,
        "sd": s,
        "ci_low": lo,
        "ci_high": hi,
        "chance_to_win": post.sf(0.0),
        "risk_control": post.expect(lambda t: max(t, 0.0), epsabs=1e-15, epsrel=1e-12),
        "risk_treatment": post.expect(lambda t: max(-t, 0.0), epsabs=1e-15, epsrel=1e-12),
    }


def _assert_matches(result: BayesianComparison, expected: dict, rel=1e-7, abs_=1e-10):
    for field, value in expected.items():
        assert getattr(result, field) == pytest.approx(value, rel=rel, abs=abs_), field


def test_flat_prior_is_the_fixed_horizon_z_interval():
    (ya, _), (yb, _) = _raw(1)
    a, b = Moments.from_values(ya), Moments.from_values(yb)
    ma, mb = ya.mean(), yb.mean()
    va, vb = ya.var(ddof=1) / ya.size, yb.var(ddof=1) / yb.size
    absolute = bayesian_compare(a, b, relative=False)
    _assert_matches(absolute, _normal_summary(mb - ma, np.sqrt(va + vb)))
    # Relative: the delta-method variance of (mb − ma)/ma, from the raw arrays.
    relative = bayesian_compare(a, b, relative=True, alpha=0.1)
    var = vb / ma**2 + va * mb**2 / ma**4
    _assert_matches(relative, _normal_summary((mb - ma) / ma, np.sqrt(var), alpha=0.1))
    # A z interval: inside compare's Welch t interval, with the same centre.
    t = compare(a, b, relative=True, alpha=0.1)
    assert t.ci_low < relative.ci_low < relative.ci_high < t.ci_high
    assert relative.ci_low + relative.ci_high == pytest.approx(t.ci_low + t.ci_high)


def test_flat_prior_ratio_and_cuped_from_raw_arrays():
    (ya, xa), (yb, xb) = _raw(2)
    # Ratio Σy/Σx: the linearised per-unit values (y − r·x)/mean(x) (delta method).
    lin_var = lambda y, x: np.var((y - y.sum() / x.sum() * x) / x.mean(), ddof=1) / y.size  # noqa: E731
    r = bayesian_compare(RatioMoments.from_values(ya, xa), RatioMoments.from_values(yb, xb), False)
    d = yb.sum() / xb.sum() - ya.sum() / xa.sum()
    _assert_matches(r, _normal_summary(d, np.sqrt(lin_var(ya, xa) + lin_var(yb, xb))))
    # CUPED: θ from both arms pooled, then the plain difference of y − θx.
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    adj_a, adj_b = ya - theta * xa, yb - theta * xb
    c = bayesian_compare(Moments.from_values(ya, xa), Moments.from_values(yb, xb), False, True)
    se = np.sqrt(adj_a.var(ddof=1) / adj_a.size + adj_b.var(ddof=1) / adj_b.size)
    _assert_matches(c, _normal_summary(adj_b.mean() - adj_a.mean(), se))
    assert c.sd < bayesian_compare(Moments.from_values(ya), Moments.from_values(yb), False).sd


def _grid_posterior(d, v, m0, t2, alpha=0.05):
    """Posterior of Δ given d ~ N(Δ, v) and Δ ~ N(m0, t2), by numerical integration (no algebra):
    likelihood × prior integrated with scipy's quad, the interval by root-finding on its cdf."""

    def dens(t):  # unnormalised; scalar math, as sps.norm.pdf is slow inside quad
        return math.exp(-((d - t) ** 2) / (2 * v) - (t - m0) ** 2 / (2 * t2))

    lo, hi = d - 40 * np.sqrt(v), d + 40 * np.sqrt(v)

    def moment(f):
        return integrate.quad(lambda t: f(t) * dens(t), lo, hi, points=[0.0, d], limit=200)[0]

    z = moment(lambda t: 1.0)
    mean = moment(lambda t: t) / z
    sd = np.sqrt(moment(lambda t: (t - mean) ** 2) / z)
    cdf = lambda q: integrate.quad(dens, lo, q, points=[0.0, d], limit=200)[0] / z  # noqa: E731
    return {
        "effect": mean,
        "sd": sd,
        "ci_low": optimize.brentq(lambda q: cdf(q) - alpha / 2, lo, hi, xtol=1e-14),
        "ci_high": optimize.brentq(lambda q: cdf(q) - (1 - alpha / 2), lo, hi, xtol=1e-14),
        "chance_to_win": moment(lambda t: float(t > 0)) / z,
        "risk_control": moment(lambda t: max(t, 0.0)) / z,
        "risk_treatment": moment(lambda t: max(-t, 0.0)) / z,
    }


def test_informative_prior_posterior_by_numerical_integration():
    (ya, _), (yb, _) = _raw(3, n_a=800, n_b=900, lift=0.06)
    a, b = Moments.from_values(ya), Moments.from_values(yb)
    ma, mb = ya.mean(), yb.mean()
    va, vb = ya.var(ddof=1) / ya.size, yb.var(ddof=1) / yb.size
    prior = Prior.normal(mean=-0.01, sd=0.03)  # on the relative lift, as GrowthBook states it
    # Relative comparison, relative prior.
    d, v = (mb - ma) / ma, vb / ma**2 + va * mb**2 / ma**4
    rel = bayesian_compare(a, b, relative=True, prior=prior)
    _assert_matches(rel, _grid_posterior(d, v, -0.01, 0.03**2), rel=1e-6, abs_=1e-9)
    # Absolute comparison: the relative prior is rescaled by the baseline mean.
    absolute = bayesian_compare(a, b, relative=False, prior=prior)
    expected = _grid_posterior(mb - ma, va + vb, -0.01 * ma, (0.03 * ma) ** 2)
    _assert_matches(absolute, expected, rel=1e-6, abs_=1e-9)
    # The same prior stated on the absolute scale gives the same posterior.
    same = Prior.normal(mean=-0.01 * ma, sd=0.03 * ma, relative=False)
    _assert_matches(bayesian_compare(a, b, relative=False, prior=same), expected, 1e-6, 1e-9)
    # The prior pulled the estimate towards its mean and narrowed it.
    assert rel.effect < rel.data_effect and rel.sd < rel.data_se


def test_lower_is_better_flips_chance_and_swaps_risks():
    (ya, _), (yb, _) = _raw(4)
    a, b = Moments.from_values(ya), Moments.from_values(yb)
    up = bayesian_compare(a, b, prior=Prior.normal(0.0, 0.05))
    down = bayesian_compare(a, b, prior=Prior.normal(0.0, 0.05), higher_is_better=False)
    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win)
    assert (down.risk_control, down.risk_treatment) == (up.risk_treatment, up.risk_control)
    assert (down.effect, down.ci_low, down.ci_high) == (up.effect, up.ci_low, up.ci_high)


def test_arrays_in_arrays_out():
    rng = np.random.default_rng(5)
    ys = [rng.gamma(2.0, 2.0, n) for n in (300, 310, 500, 520, 40, 45)]
    one = [Moments.from_values(y) for y in ys]

    def stack(ms):
        return Moments(*(np.array([getattr(m, f) for m in ms]) for f in ("n", "sum", "sum_sq")))

    a, b = stack(one[0::2]), stack(one[1::2])
    for relative in (True, False):
        vec = bayesian_compare(a, b, relative=relative, prior=Prior.normal(0.0, 0.1))
        assert isinstance(vec.effect, np.ndarray) and vec.effect.shape == (3,)
        for i in range(3):
            s = bayesian_compare(one[2 * i], one[2 * i + 1], relative, prior=Prior.normal(0, 0.1))
            assert isinstance(s.chance_to_win, float)
            for field in FIELDS:
                assert getattr(vec, field)[i] == pytest.approx(getattr(s, field), rel=1e-12)


def test_degenerate_inputs_are_nan_as_in_compare():
    ok = Moments.from_values([1.0, 2.0, 4.0])
    cases = {
        "n < 2": (Moments.from_values([3.0]), ok, True, None),
        "zero variance": (
            Moments.from_values([2.0, 2.0]),
            Moments.from_values([5.0, 5.0]),
            False,
            None,
        ),
        "zero baseline, relative": (Moments.from_values([-1.0, 1.0, -2.0, 2.0]), ok, True, None),
        # gbstats divides by a zero prior variance here (ZeroDivisionError).
        "zero baseline, relative prior on absolute": (
            Moments.from_values([-1.0, 1.0, -2.0, 2.0]),
            ok,
            False,
            Prior.normal(0.0, 0.1),
        ),
    }
    for name, (a, b, relative, prior) in cases.items():
        r = bayesian_compare(a, b, relative=relative, prior=prior)
        assert all(np.isnan(getattr(r, f)) for f in FIELDS), name
        assert bayesian_decision(r) == "keep_running", name
    # The same zero baseline with a flat prior on the absolute difference is fine.
    flat = bayesian_compare(Moments.from_values([-1.0, 1.0, -2.0, 2.0]), ok, relative=False)
    assert all(np.isfinite(getattr(flat, f)) for f in FIELDS)
    with pytest.raises(ValueError, match="positive variance"):
        Prior(variance=0.0, proper=True)


def test_decision_reads_chance_to_win_and_risk():
    base = Moments(n=20000, sum=2000.0, sum_sq=2000.0)  # 10% conversion
    conv = lambda k, n=20000: Moments(n=n, sum=float(k), sum_sq=float(k))  # noqa: E731
    clear_win, clear_loss, noise = conv(2300), conv(1700), conv(2030)
    assert bayesian_decision(bayesian_compare(base, clear_win)) == "ship"
    assert bayesian_decision(bayesian_compare(base, clear_loss)) == "rollback"
    assert bayesian_decision(bayesian_compare(base, noise)) == "keep_running"
    # Lower is better: the same drop is a win.
    assert bayesian_decision(bayesian_compare(base, clear_loss, higher_is_better=False)) == "ship"
    # Risk counts relative to the baseline mean whatever the scale of the effect.
    for relative in (True, False):
        r = bayesian_compare(base, clear_win, relative=relative)
        assert r.relative_risk_treatment == pytest.approx(
            r.risk_treatment / (1.0 if relative else 0.1)
        )
    # A winner by chance to win alone is held back while the risk of shipping is above threshold.
    small_a, small_b = conv(20, 200), conv(36, 200)
    r = bayesian_compare(small_a, small_b)
    assert r.chance_to_win > 0.95 and r.relative_risk_treatment > 0.0025
    assert bayesian_decision(r) == "keep_running"
    assert bayesian_decision(r, risk_threshold=r.relative_risk_treatment) == "ship"
    # Arrays in, an array of words out.
    stack = Moments(n=[20000.0] * 3, sum=[2300.0, 1700.0, 2030.0], sum_sq=[2300.0, 1700.0, 2030.0])
    words = bayesian_decision(bayesian_compare(base, stack))
    assert list(words) == ["ship", "rollback", "keep_running"]
    with pytest.raises(ValueError):
        bayesian_decision(r, chance_to_win_threshold=0.4)


# --- simulation on sufficient statistics ------------------------------------------------------


def test_aa_chance_to_win_crosses_95_percent_five_percent_of_the_time():
    """Flat prior: chance to win is Φ(effect/se), so under A/A it crosses 95% (and falls under 5%)
    in 5% of experiments. The relative lift is skewed at small counts (its delta-method variance
    grows with the treatment mean: at 500 conversions per arm the upper tail holds ~4.2% and the
    lower ~5.8%, measured on 200,000 replays), so that case runs at 5,000 conversions per arm."""
    rng = np.random.default_rng(20261126)
    lo, hi = _band(0.05)
    lo2, hi2 = _band(0.10)
    for relative, n in ((False, 5000), (True, 5000), (True, 50000)):
        a = _conversions(rng, n, 0.1, EXPERIMENTS)
        b = _conversions(rng, n, 0.1, EXPERIMENTS)
        ctw = bayesian_compare(a, b, relative=relative).chance_to_win
        high, low = np.mean(ctw >= 0.95), np.mean(ctw <= 0.05)
        print(
            f"\nA/A flat prior, relative={relative}, n={n}: P(ctw >= 0.95) {high:.4f}, "
            f"P(ctw <= 0.05) {low:.4f} (band {lo:.4f}–{hi:.4f})"
        )
        assert lo2 <= high + low <= hi2
        if not relative or n >= 50000:
            assert lo <= high <= hi and lo <= low <= hi


def test_credible_interval_covers_a_planted_effect():
    rng = np.random.default_rng(20261127)
    cov = np.array([[25.0, 12.0], [12.0, 16.0]])
    a = _normal_arm(rng, 2000, np.array([10.0, 8.0]), cov, EXPERIMENTS)
    b = _normal_arm(rng, 2100, np.array([10.4, 8.0]), cov, EXPERIMENTS)
    lo, hi = _band(0.95)
    for relative, cuped, truth in ((False, False, 0.4), (True, False, 0.04), (False, True, 0.4)):
        r = bayesian_compare(a, b, relative=relative, cuped=cuped)
        covered = np.mean((r.ci_low <= truth) & (truth <= r.ci_high))
        print(
            f"\nplanted effect {truth} (relative={relative}, cuped={cuped}): 95% credible interval "
            f"covers {covered:.4f} (band {lo:.4f}–{hi:.4f})"
        )
        assert lo <= covered <= hi
    c = _conversions(rng, 20000, 0.10, EXPERIMENTS)
    t = _conversions(rng, 20000, 0.11, EXPERIMENTS)
    r = bayesian_compare(c, t, relative=True)
    covered = np.mean((r.ci_low <= 0.1) & (0.1 <= r.ci_high))
    print(f"conversions +10% relative: covers {covered:.4f}")
    assert lo <= covered <= hi


def test_chance_to_win_goes_to_one_as_n_grows():
    rng = np.random.default_rng(20261128)
    means = []
    for n in (1_000, 10_000, 100_000, 1_000_000):
        a = _conversions(rng, n, 0.100, EXPERIMENTS)
        b = _conversions(rng, n, 0.103, EXPERIMENTS)  # +3% relative
        means.append(float(np.mean(bayesian_compare(a, b).chance_to_win)))
    print(f"\nmean chance to win of a +3% lift at n = 1e3..1e6 per arm: {np.round(means, 4)}")
    assert all(x < y for x, y in zip(means, means[1:], strict=False))
    assert means[0] < 0.7 and means[-1] > 0.999


def test_informative_prior_at_zero_shrinks_and_is_calibrated():
    """Lifts drawn from the prior N(0, τ²): the posterior mean beats the raw estimate on squared
    error, and the credible interval covers the drawn lift 95% of the time."""
    rng = np.random.default_rng(20261129)
    tau, n, p = 0.03, 20000, 0.1
    lift = rng.normal(0.0, tau, EXPERIMENTS)
    a = _conversions(rng, n, p, EXPERIMENTS)
    s = rng.binomial(n, p * (1 + lift)).astype(float)
    b = Moments(n=np.full(EXPERIMENTS, float(n)), sum=s, sum_sq=s)
    r = bayesian_compare(a, b, prior=Prior.normal(0.0, tau))
    flat = bayesian_compare(a, b)
    # Shrunk towards 0 by the factor τ²/(τ² + se²) (equal only where the arms tie exactly).
    assert np.all(np.abs(r.effect) <= np.abs(r.data_effect))
    assert np.mean(np.abs(r.effect) < 0.7 * np.abs(r.data_effect)) > 0.99
    assert np.all(r.sd < flat.sd)
    mse_post, mse_raw = np.mean((r.effect - lift) ** 2), np.mean((r.data_effect - lift) ** 2)
    covered = np.mean((r.ci_low <= lift) & (lift <= r.ci_high))
    lo, hi = _band(0.95)
    print(
        f"\nprior N(0, {tau}²), lifts drawn from it: MSE posterior {mse_post:.2e} vs raw "
        f"{mse_raw:.2e}; credible interval covers {covered:.4f} (band {lo:.4f}–{hi:.4f})"
    )
    assert mse_post < 0.7 * mse_raw
    assert lo <= covered <= hi
