"""The planted effects and the ground truth the analysis must recover (``raw/_truth.json``).

Effects are multiplicative and act on the visits of users assigned to a non-baseline variant. The
estimand is the relative difference of per-user metric means between a variant and the baseline (for
ratio metrics, the ratio of sums), over the users the assigner puts into the experiment.

Two plants leave every experiment's expected lift as :data:`EFFECTS` says, and are recorded beside:

- :data:`INTERACTIONS`, a pure A×B term between two experiments of different layers: for the
  users in both, the multiplier is × (1 + size) when both are in the planted variant or both in
  the baseline and × (1 − size) otherwise. Averaged over the other experiment's arms (50/50 by
  hash, independent of the own arm) it is 1, so neither experiment's expected lift moves; the
  effect of one depends on the arm of the other (the daily interaction scan must flag the pair).
- :data:`SEGMENT_EFFECTS`, a variant's multiplier that differs across the levels of a segment
  attribute: one level gets its own value and the others one value chosen so that the variant's
  expected lift over the population stays the planted one (the heterogeneity test must flag it).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import orjson

from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.contracts.hashing import BUCKETS, bucket
from ab_pipelines.simulate.population import PLATFORM_SHARES, PLATFORM_SPEED_MS, PLATFORMS

__all__ = [
    "EFFECTS",
    "EXPOSURE_DROP",
    "INTERACTIONS",
    "MULTIPLIER_KINDS",
    "SEGMENT_EFFECTS",
    "conversion_lift",
    "exposure_dropped",
    "experiment_truth",
    "interaction_truth",
    "segment_truth",
    "merge_truth",
    "metric_lift",
    "planted_multipliers",
    "user_multipliers",
]

MULTIPLIER_KINDS = ("purchase_prob", "order_value", "page_load")

# experiment -> variant -> multipliers; every other experiment and variant (including unknown
# future ones) has no effect.
EFFECTS: dict[str, dict[str, dict[str, float]]] = {
    "checkout_cta": {"treatment": {"purchase_prob": 1.08}},
    "checkout_layout": {"one_page": {"order_value": 1.05}},
    "recs_ranking": {"treatment": {"order_value": 1.03}},
    "search_speed": {"lite": {"page_load": 0.90}},
    # Harmful: the video slows every page by 15%; the guardrail (3%) should kill it (auto_kill).
    "hero_video": {"treatment": {"page_load": 1.15}},
    # A bandit (type: bandit): free shipping sells clearly more, so its weight should grow day
    # by day through the published config versions.
    "promo_banner": {"free_shipping": {"purchase_prob": 1.25}, "discount": {"purchase_prob": 1.05}},
}

# A pure interaction (module doc): the lite results page saves much less load time when the new
# recommendations ranking is on (its widget loads on the page): search_speed's lite effect on page
# load is about −19% under the old ranking and about −0.5% under the new one, −10% on average.
INTERACTIONS: tuple[dict, ...] = (
    {
        "experiments": ("recs_ranking", "search_speed"),
        "variants": ("treatment", "lite"),
        "multiplier": "page_load",
        "size": 0.05,
    },
)


def _other_levels(overall: float, level: str, value: float, weights: Mapping[str, float]) -> float:
    """The multiplier of every level but ``level`` that keeps the weighted average at ``overall``."""
    rest = sum(w for k, w in weights.items() if k != level)
    total = sum(weights.values())
    return 1.0 + ((overall - 1.0) * total - (value - 1.0) * weights[level]) / rest


# search_speed runs on phones (ios, android). A page-load sum weighs each platform by its share of
# users times its mean load time (population.py), so with lite at ×0.80 on android, ios gets the
# multiplier that keeps the lift over both at the planted ×0.90: ×1.0143 (lite does nothing there).
_PHONES = {
    p: share * speed
    for p, share, speed in zip(PLATFORMS, PLATFORM_SHARES, PLATFORM_SPEED_MS, strict=True)
    if p in ("ios", "android")
}
# experiment -> variant -> attribute -> level -> multipliers (replacing the variant's own there).
SEGMENT_EFFECTS: dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]] = {
    "search_speed": {
        "lite": {
            "platform": {
                "android": {"page_load": 0.80},
                "ios": {"page_load": _other_levels(0.90, "android", 0.80, _PHONES)},
            }
        }
    }
}

# A broken split: the exposure events (not the behaviour) of this share of a variant's users are
# lost, chosen by hash, so a chi-square sample-ratio test flags the experiment.
EXPOSURE_DROP: dict[str, dict[str, float]] = {"recs_ranking": {"treatment": 0.08}}
_DROP_SALT = "sim_exposure_drop"


def planted_multipliers(experiment_id: str, variant: str) -> dict[str, float]:
    """All three multipliers of one variant (1.0 where nothing is planted).

    >>> planted_multipliers("search_speed", "lite")
    {'purchase_prob': 1.0, 'order_value': 1.0, 'page_load': 0.9}
    """
    planted = EFFECTS.get(experiment_id, {}).get(variant, {})
    return {k: float(planted.get(k, 1.0)) for k in MULTIPLIER_KINDS}


def user_multipliers(
    size: int,
    assignments: Mapping[str, np.ndarray],
    experiments: Mapping[str, Experiment],
    attributes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-user product of the multipliers of every experiment variant the user is in, with the
    planted segment effects (``attributes``: attribute -> each user's level; none without) and
    the planted interactions between the experiments of ``assignments``.

    ``assignments`` maps an experiment id to the users' variant indexes (-1: not in it).
    """
    out = {k: np.ones(size) for k in MULTIPLIER_KINDS}
    for exp_id, variants in assignments.items():
        exp = experiments[exp_id]
        for i, vid in enumerate(exp.variant_ids):
            if i == 0:
                continue  # effects act on non-baseline variants only
            mine = variants == i
            for k, m in planted_multipliers(exp_id, vid).items():
                per_user = np.full(size, m)
                for attr, levels in SEGMENT_EFFECTS.get(exp_id, {}).get(vid, {}).items():
                    if attributes is None or attr not in attributes:
                        continue
                    user_level = np.asarray(attributes[attr])
                    for level, mult in levels.items():
                        per_user[user_level == level] = mult.get(k, m)
                if np.any(per_user != 1.0):
                    out[k][mine] *= per_user[mine]
    for plant in INTERACTIONS:
        (a, b), (va, vb) = plant["experiments"], plant["variants"]
        if a not in assignments or b not in assignments:
            continue
        sign_a = _interaction_sign(assignments[a], experiments[a], va)
        sign_b = _interaction_sign(assignments[b], experiments[b], vb)
        out[plant["multiplier"]] *= 1.0 + plant["size"] * sign_a * sign_b
    return out


def _interaction_sign(variants: np.ndarray, exp: Experiment, planted: str) -> np.ndarray:
    """+1 in the planted variant, −1 in the baseline, 0 elsewhere (other variants, not in it)."""
    sign = np.zeros(len(variants))
    sign[variants == exp.variant_ids.index(planted)] = 1.0
    sign[variants == 0] = -1.0
    return sign


def interaction_truth(experiments: Mapping[str, Experiment]) -> list[dict]:
    """The planted interactions among ``experiments`` as the truth file records them: the cells'
    multipliers and the expected relative effect of B's planted variant on the multiplier within
    A's baseline and planted variant (the cells name A's variant, then B's)."""
    out = []
    for plant in INTERACTIONS:
        (a, b), (va, vb), d = plant["experiments"], plant["variants"], plant["size"]
        if a not in experiments or b not in experiments:
            continue
        base_a, base_b = experiments[a].baseline, experiments[b].baseline
        own_b = planted_multipliers(b, vb)[plant["multiplier"]]
        cells = {
            f"{x}/{y}": 1.0 + d * sx * sy
            for x, sx in ((base_a, -1.0), (va, 1.0))
            for y, sy in ((base_b, -1.0), (vb, 1.0))
        }
        within = {
            x: own_b * cells[f"{x}/{vb}"] / cells[f"{x}/{base_b}"] - 1.0 for x in (base_a, va)
        }
        out.append(
            {
                "experiments": [a, b],
                "variants": {a: va, b: vb},
                "multiplier": plant["multiplier"],
                "size": d,
                "cell_multipliers": cells,
                "effect_of_b_within_a": within,
            }
        )
    return out


def segment_truth() -> dict:
    """The planted segment effects and each level's expected lift of the multiplier it changes.

    >>> lv = segment_truth()["search_speed"]["lite"]["platform"]
    >>> round(lv["android"]["page_load"], 4), round(lv["ios"]["page_load"], 4)
    (-0.2, 0.0143)
    """
    return {
        exp: {
            vid: {
                attr: {
                    level: {k: m - 1.0 for k, m in mult.items()} for level, mult in levels.items()
                }
                for attr, levels in attrs.items()
            }
            for vid, attrs in variants.items()
        }
        for exp, variants in SEGMENT_EFFECTS.items()
    }


def exposure_dropped(
    user_ids: Sequence[str], experiment: Experiment, variants: np.ndarray
) -> np.ndarray:
    """Mask of the users whose exposure events are lost (the planted sample-ratio mismatch)."""
    dropped = np.zeros(len(user_ids), dtype=bool)
    for i, vid in enumerate(experiment.variant_ids):
        share = EXPOSURE_DROP.get(experiment.id, {}).get(vid)
        if not share:
            continue
        limit = round(BUCKETS * share)
        for u in np.flatnonzero(variants == i).tolist():
            dropped[u] = bucket(f"{_DROP_SALT}:{experiment.id}", user_ids[u]) < limit
    return dropped


def conversion_lift(
    visit_prob: np.ndarray,
    purchase_prob: np.ndarray,
    multiplier: float,
    days: int,
    base_multiplier: np.ndarray | float = 1.0,
) -> float:
    """Expected relative lift of "any purchase since first exposure", H = ``days`` after the start.

    A user visits each day with probability v (one visit a day) and buys on a visit with probability
    q·m. First exposure is the first visit: P(f) = (1 − v)^f·v for f in [0, H), and
    P(convert | f, m) = 1 − (1 − q·m)(1 − v·q·m)^(H − f − 1). The lift is
    Σ_u Σ_f P(f)·P(conv | f, m) / Σ_u Σ_f P(f)·P(conv | f, 1) − 1 (the share exposed by H is the
    same in both arms, so it cancels). ``base_multiplier`` holds the other experiments' effects.

    >>> round(conversion_lift(np.array([1.0]), np.array([0.1]), 1.1, 1), 6)
    0.1
    """
    if days < 1 or multiplier == 1.0:
        return 0.0
    v = np.asarray(visit_prob, dtype=float)[:, None]
    q = (np.asarray(purchase_prob, dtype=float) * base_multiplier)[:, None]
    f = np.arange(days)[None, :]
    p_first = (1.0 - v) ** f * v

    def p_convert(m: float) -> np.ndarray:
        qm = np.clip(q * m, 0.0, 1.0)
        return 1.0 - (1.0 - qm) * (1.0 - v * qm) ** (days - f - 1)

    base = float((p_first * p_convert(1.0)).sum())
    return float((p_first * p_convert(multiplier)).sum() / base - 1.0) if base > 0 else 0.0


def _aggregate_multiplier(event: str | None, agg: str | None, mult: Mapping[str, float]) -> float:
    # The expected per-user aggregate scales by this factor (events other than these are untouched).
    if event == "purchase":
        return mult["purchase_prob"] * (mult["order_value"] if agg == "sum" else 1.0)
    if event == "page_view" and agg == "sum":
        return mult["page_load"]
    return 1.0


def metric_lift(metric: Metric, mult: Mapping[str, float], conversion: float) -> float:
    """Expected relative lift of one metric under the multipliers ``mult``.

    Follows exactly from the multipliers (revenue = (1 + conv)(1 + value) − 1, revenue_per_order =
    value − 1, page_load_ms = load − 1) except for "any purchase" proportions, whose analytic lift
    ``conversion`` the caller computes with :func:`conversion_lift`.
    """
    if metric.kind == "ratio":
        num, den = metric.numerator, metric.denominator
        top = _aggregate_multiplier(num.event, num.agg, mult) if num else 1.0
        bottom = _aggregate_multiplier(den.event, den.agg, mult) if den else 1.0
        return top / bottom - 1.0
    if metric.kind == "proportion":
        return conversion if metric.event == "purchase" else 0.0
    return _aggregate_multiplier(metric.event, metric.agg or "sum", mult) - 1.0


def experiment_truth(
    experiment: Experiment,
    metrics: Mapping[str, Metric],
    day: dt.date,
    eligible: np.ndarray,
    visit_prob: np.ndarray,
    purchase_prob: np.ndarray,
    other_purchase_multiplier: np.ndarray,
) -> dict:
    """The truth entry of one experiment as of ``day`` (merged into the file by :func:`merge_truth`).

    ``eligible`` masks the users the assigner puts into the experiment (any variant);
    ``other_purchase_multiplier`` is the product of the other experiments' purchase multipliers.
    """
    horizon = (day - experiment.start_date).days + 1
    roles = [("primary", m) for m in experiment.metrics.primary]
    roles += [("secondary", m) for m in experiment.metrics.secondary]
    roles += [("guardrail", g.metric) for g in experiment.metrics.guardrails]
    drop = EXPOSURE_DROP.get(experiment.id, {})
    variants = experiment.variant_ids[1:]
    planted = any(
        m != 1.0 for v in variants for m in planted_multipliers(experiment.id, v).values()
    )
    entry: dict = {
        "baseline": experiment.baseline,
        "srm": bool(drop),
        "aa": not planted and not drop,
        "exposure_drop": dict(drop),
        "metrics": {},
    }
    v, q, base = visit_prob[eligible], purchase_prob[eligible], other_purchase_multiplier[eligible]
    conv_cache: dict[float, float] = {}
    for role, metric_id in roles:
        metric = metrics.get(metric_id)
        per_variant = entry["metrics"].setdefault(metric_id, {})
        for vid in variants:
            mult = planted_multipliers(experiment.id, vid)
            lift = None
            if metric is not None:
                m_q = mult["purchase_prob"]
                if m_q not in conv_cache:
                    conv_cache[m_q] = conversion_lift(v, q, m_q, horizon, base)
                lift = metric_lift(metric, mult, conv_cache[m_q])
            per_variant[vid] = {
                "role": role,
                "multipliers": mult,
                "expected_relative_lift": {day.isoformat(): lift},
            }
    return entry


def merge_truth(
    path: Path,
    entries: Mapping[str, dict],
    meta: Mapping[str, object],
    interactions: Sequence[dict] = (),
) -> dict:
    """Merge per-day truth entries into the truth file (lifts by as-of day accumulate); return it.

    ``entries`` maps an experiment id to its entry of one day, as :func:`experiment_truth` built it;
    ``interactions`` are the planted interactions (:func:`interaction_truth`); the planted segment
    effects are written with :func:`segment_truth`'s lifts.
    """
    truth = orjson.loads(path.read_bytes()) if path.exists() else {}
    truth.update(meta)
    truth["effects"] = EFFECTS
    truth["exposure_drop"] = EXPOSURE_DROP
    truth["interactions"] = list(interactions)
    truth["segment_effects"] = {
        "multipliers": SEGMENT_EFFECTS,
        "expected_relative_lift": segment_truth(),
    }
    experiments = truth.setdefault("experiments", {})
    for exp_id, new in entries.items():
        old = experiments.setdefault(exp_id, {"metrics": {}})
        for key, value in new.items():
            if key != "metrics":
                old[key] = value
        for metric_id, per_variant in new["metrics"].items():
            old_metric = old["metrics"].setdefault(metric_id, {})
            for vid, info in per_variant.items():
                lifts = old_metric.get(vid, {}).get("expected_relative_lift", {})
                lifts.update(info["expected_relative_lift"])
                old_metric[vid] = {**info, "expected_relative_lift": dict(sorted(lifts.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    os.replace(tmp, path)
    return truth
