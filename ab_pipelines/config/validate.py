"""The registry's rules (CONTRACTS section 3): every problem of every file, each naming file and field.

``validate_registry`` is what ``abp validate`` and publishing run. It checks, beyond what the
pydantic models enforce on each field (types, weights summing to 1, unique variant ids, ...):

- content: dates, layers (pairing, bounds, no allocation, no overlap while running), the
  randomization unit, variants named by ``shipped_variant`` and ``overrides``, metric references and
  each metric's kind-specific fields; holdouts (dates, layers that some experiment uses, metric
  references, at most one running holdout per layer);
- approvals: ``approved``/``running``/``stopped`` need a current approval by someone not the owner
  (experiments and holdouts alike);
- the published state: status moves one step at a time, a running experiment's layer range never
  moves, and a published experiment is stopped rather than removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ab_pipelines import settings
from ab_pipelines.config.approvals import content_sha
from ab_pipelines.config.models import STATUSES, Experiment, Holdout, Metric
from ab_pipelines.config.registry import (
    Problem,
    Registry,
    read_registry,
    read_yaml_mapping,
    relative_name,
)
from ab_pipelines.contracts.approval import NEEDS_APPROVAL, approval_state

__all__ = [
    "Problem",
    "approval_problems",
    "content_problems",
    "published_problems",
    "validate_registry",
]

DEFAULT_UNIT = "user_id"
UNITS_FILE = "units.yaml"
# A new experiment may be published in any state up to running (if approved), but not stopped.
FIRST_PUBLISH = frozenset({"draft", "in_review", "approved", "running"})


def validate_registry(
    registry_root: Path | None = None, published_state: Mapping | None = None
) -> list[Problem]:
    """Every problem of the registry at ``registry_root`` (default: the configured one).

    Args:
        registry_root: the folder holding ``experiments/`` and ``metrics/``.
        published_state: the last published config, ``{"experiments": {id: {"status": str,
            "layer": str | None, "layer_range": [lo, hi] | None}}}``; None when nothing was published.

    Returns:
        The problems, grouped by file (files in name order); empty when the registry is valid.
    """
    root = Path(registry_root) if registry_root is not None else settings.registry_root()
    registry, problems = read_registry(root)
    problems += content_problems(registry, root)
    problems += approval_problems(registry, root)
    problems += published_problems(registry, root, published_state)
    return sorted(problems, key=lambda p: p.file)  # stable: a file's problems keep their order


# ---- content ------------------------------------------------------------------------------------
def content_problems(registry: Registry, root: Path) -> list[Problem]:
    """Problems of the loaded experiments and metrics that no single field shows."""
    problems: list[Problem] = []
    units = _allowed_units(root, problems)
    # A metric whose own file failed to load is reported there, not at every reference to it.
    metric_files = _stems(root / "metrics")
    for metric in registry.metrics.values():
        name = relative_name(registry.file_of("metrics", metric.id), root)
        problems += _metric_problems(metric, name)
    for exp in registry.experiments.values():
        name = relative_name(registry.file_of("experiments", exp.id), root)
        problems += _experiment_problems(exp, name, units)
        problems += _reference_problems(exp, name, registry.metrics.keys() | metric_files)
        problems += _covariate_problems(exp, name, registry.metrics.keys() | metric_files)
        problems += _bandit_problems(exp, name, registry.metrics)
    problems += _overlap_problems(registry, root)
    problems += _holdout_problems(registry, root, registry.metrics.keys() | metric_files)
    return problems


def _holdout_problems(registry: Registry, root: Path, known_metrics: set[str]) -> list[Problem]:
    """Dates, layers no experiment uses, metric references, and two running holdouts on a layer
    (a unit would be held by two salts: the holdouts would not be the share they say)."""
    layers = {e.layer for e in registry.experiments.values() if e.layer is not None}
    holding: dict[str, str] = {}  # layer -> the running holdout that holds it (first by id)
    out: list[Problem] = []
    for h in sorted(registry.holdouts.values(), key=lambda h: h.id):
        name = relative_name(registry.file_of("holdouts", h.id), root)
        if h.id in registry.experiments:
            # its exposures and results are filed under its id, as an experiment's are
            out.append(Problem(name, "id", f"'{h.id}' is also an experiment's id"))
        if h.end_date is not None and h.end_date < h.start_date:
            out.append(
                Problem(name, "end_date", f"{h.end_date} is before start_date {h.start_date}")
            )
        for layer in h.layers:
            if layer not in layers:
                known = ", ".join(sorted(layers)) or "none"
                out.append(
                    Problem(name, "layers", f"unknown layer '{layer}' (layers in use: {known})")
                )
            if h.status != "running":
                continue
            other = holding.setdefault(layer, h.id)
            if other != h.id:
                out.append(
                    Problem(
                        name,
                        "layers",
                        f"layer '{layer}' is already held by running holdout '{other}'",
                    )
                )
        out += _reference_problems(h, name, known_metrics)
        out += _covariate_problems(h, name, known_metrics)
    return out


def _stems(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.y*ml")}


def _allowed_units(root: Path, problems: list[Problem]) -> set[str]:
    path = root / UNITS_FILE
    if not path.exists():
        return {DEFAULT_UNIT}
    listed = read_yaml_mapping(path, UNITS_FILE, problems) or {}
    return {DEFAULT_UNIT, *(str(k) for k in listed)}


def _metric_problems(m: Metric, name: str) -> list[Problem]:
    out: list[Problem] = []
    if m.kind == "ratio":
        for part in ("numerator", "denominator"):
            if getattr(m, part) is None:
                out.append(Problem(name, part, f"a ratio metric needs a {part} (event and agg)"))
        for unused in ("event", "agg"):
            if getattr(m, unused) is not None:
                out.append(
                    Problem(
                        name,
                        unused,
                        "not used by a ratio metric; set it in numerator and denominator",
                    )
                )
        return out
    if m.event is None:
        out.append(Problem(name, "event", f"a {m.kind} metric needs the event it reads"))
    if m.kind == "mean" and m.agg not in ("sum", "count"):
        out.append(
            Problem(name, "agg", f"a mean metric needs agg sum or count, got {m.agg or 'none'}")
        )
    if m.kind == "proportion" and m.agg not in (None, "any"):
        out.append(
            Problem(
                name,
                "agg",
                f"a proportion counts users with any event; agg must be any or absent, got {m.agg}",
            )
        )
    for unused in ("numerator", "denominator"):
        if getattr(m, unused) is not None:
            out.append(
                Problem(name, unused, f"only a ratio metric has a {unused}, this is a {m.kind}")
            )
    return out


def _experiment_problems(e: Experiment, name: str, units: set[str]) -> list[Problem]:
    out: list[Problem] = []
    if e.end_date is not None and e.end_date < e.start_date:
        out.append(Problem(name, "end_date", f"{e.end_date} is before start_date {e.start_date}"))
    if e.unit not in units:
        out.append(
            Problem(
                name,
                "unit",
                f"unknown unit '{e.unit}'; expected {DEFAULT_UNIT} or a key of {UNITS_FILE}",
            )
        )
    if e.layer is not None and e.layer_range is None:
        out.append(Problem(name, "layer_range", f"layer '{e.layer}' needs a layer_range"))
    if e.layer is None and e.layer_range is not None:
        out.append(Problem(name, "layer", "a layer_range needs a layer"))
    if e.layer is not None and e.allocation != 1:
        out.append(
            Problem(
                name,
                "allocation",
                f"must not be set inside layer '{e.layer}'; the layer_range is the share it takes",
            )
        )
    variants = e.variant_ids
    if e.shipped_variant is not None:
        if e.shipped_variant not in variants:
            out.append(
                Problem(
                    name,
                    "shipped_variant",
                    f"'{e.shipped_variant}' is not one of the variants ({', '.join(variants)})",
                )
            )
        if e.status != "stopped":
            out.append(
                Problem(
                    name, "shipped_variant", f"is set only once stopped; status is '{e.status}'"
                )
            )
    for user, variant in e.overrides.items():
        if variant not in variants:
            out.append(
                Problem(
                    name, "overrides", f"user '{user}' is forced into unknown variant '{variant}'"
                )
            )
    return out


def _reference_problems(e: Experiment | Holdout, name: str, known: Iterable[str]) -> list[Problem]:
    known = set(known)
    roles = {
        "metrics.primary": e.metrics.primary,
        "metrics.secondary": e.metrics.secondary,
        "metrics.guardrails": [g.metric for g in e.metrics.guardrails],
    }
    return [
        Problem(name, field, f"unknown metric '{m}' (no metrics/{m}.yaml)")
        for field, ids in roles.items()
        for m in ids
        if m not in known
    ]


def _covariate_problems(e: Experiment | Holdout, name: str, known: Iterable[str]) -> list[Problem]:
    """``analysis.covariates``: known metrics of the experiment itself (their per-unit pre-period
    values are computed only for those), named attributes, nothing twice."""
    m_ = e.metrics
    own = {*m_.primary, *m_.secondary, *(g.metric for g in m_.guardrails)}
    known, field = set(known), "analysis.covariates"
    out, seen = [], set()
    for entry in e.analysis.covariates:
        if entry in seen:
            out.append(Problem(name, field, f"'{entry}' is listed twice"))
        seen.add(entry)
    for m in e.analysis.covariate_metrics:
        if m not in known:
            out.append(Problem(name, field, f"unknown metric '{m}' (no metrics/{m}.yaml)"))
        elif m not in own:
            out.append(
                Problem(
                    name,
                    field,
                    f"metric '{m}' is not one of this experiment's metrics (primary, secondary or "
                    "guardrails): only their pre-period values are computed",
                )
            )
    if any(not a.strip() for a in e.analysis.covariate_attributes):
        out.append(Problem(name, field, "an attribute covariate needs a name (attribute:<name>)"))
    ps = e.analysis.poststratify
    if ps is not None and ps not in e.analysis.segments:
        have = ", ".join(e.analysis.segments) or "none"
        out.append(
            Problem(
                name,
                "analysis.poststratify",
                f"'{ps}' is not one of analysis.segments ({have}): its strata are the segment rows",
            )
        )
    return out


def _bandit_problems(e: Experiment, name: str, metrics: Mapping[str, Metric]) -> list[Problem]:
    """A bandit (docs/analysis.md, "Bandits"): its settings, a primary decision metric, metrics
    that can be weighted by period (means and proportions), no analysis that pools periods."""
    if not e.is_bandit:
        return []
    b = e.bandit
    if b is None:
        return [Problem(name, "bandit", "a bandit needs its settings: bandit: {metric: <id>}")]
    out: list[Problem] = []
    if b.metric not in e.metrics.primary:
        have = ", ".join(e.metrics.primary) or "none"
        out.append(
            Problem(
                name,
                "bandit.metric",
                f"'{b.metric}' is not one of metrics.primary ({have}): the weights follow the "
                "decision metric",
            )
        )
    k = len(e.variants)
    if b.floor > 1.0 / k:
        out.append(
            Problem(name, "bandit.floor", f"{b.floor:g} is above 1/{k}: {k} arms cannot all get it")
        )
    for mid in dict.fromkeys(e.metric_ids()):
        m = metrics.get(mid)
        if m is not None and m.kind not in ("mean", "proportion"):
            out.append(
                Problem(
                    name,
                    "metrics",
                    f"metric '{mid}' is a {m.kind}: a bandit's metrics are weighted by period "
                    "(the weights change), which needs a mean or a proportion",
                )
            )
    pooled = {
        "analysis.segments": e.analysis.segments,
        "analysis.covariates": e.analysis.covariates,
        "analysis.poststratify": e.analysis.poststratify,
    }
    for field, value in pooled.items():
        if value:
            out.append(
                Problem(
                    name,
                    field,
                    "not for a bandit: it would pool units first exposed under different weights "
                    "(only the period-weighted comparison is unbiased)",
                )
            )
    return out


def _overlap_problems(registry: Registry, root: Path) -> list[Problem]:
    by_layer: dict[str, list[Experiment]] = {}
    for e in sorted(registry.experiments.values(), key=lambda e: e.id):
        if e.status == "running" and e.layer is not None and e.layer_range is not None:
            by_layer.setdefault(e.layer, []).append(e)
    out: list[Problem] = []
    for layer, exps in by_layer.items():
        for j, b in enumerate(exps):
            for a in exps[:j]:
                (alo, ahi), (blo, bhi) = a.layer_range, b.layer_range
                if alo < bhi and blo < ahi:  # half-open intervals [lo, hi)
                    out.append(
                        Problem(
                            relative_name(registry.file_of("experiments", b.id), root),
                            "layer_range",
                            f"[{blo:g}, {bhi:g}) overlaps {a.id}'s [{alo:g}, {ahi:g}) "
                            f"in layer '{layer}'; both are running",
                        )
                    )
    return out


# ---- approvals ----------------------------------------------------------------------------------
def approval_problems(registry: Registry, root: Path) -> list[Problem]:
    """Experiments and holdouts past review without a current approval by someone other than
    the owner."""
    out: list[Problem] = []
    for kind, e in [
        *(("experiments", e) for e in registry.experiments.values()),
        *(("holdouts", h) for h in registry.holdouts.values()),
    ]:
        if e.status not in NEEDS_APPROVAL:
            continue
        path = registry.file_of(kind, e.id)
        name = relative_name(path, root)
        state = approval_state(e.owner, [(a.by, a.sha) for a in e.approvals], content_sha(path))
        if state.state == "missing":
            out.append(
                Problem(
                    name,
                    "approvals",
                    f"status '{e.status}' needs an approval by someone other than the owner {e.owner}",
                )
            )
        elif state.state == "stale":
            out.append(
                Problem(
                    name,
                    "approvals",
                    f"approval is stale: content changed since {state.last_reviewer} approved it",
                )
            )
    return out


# ---- the published state ------------------------------------------------------------------------
def published_problems(
    registry: Registry, root: Path, published_state: Mapping | None
) -> list[Problem]:
    """Status transitions, moved layer ranges and removals, against the last published config."""
    published: Mapping = (published_state or {}).get("experiments", {})
    files_present = _stems(root / "experiments")  # a file that failed to load was not removed
    out: list[Problem] = []
    for exp_id, pub in published.items():
        if exp_id in registry.experiments or exp_id in files_present:
            continue
        if pub.get("status") not in ("running", "stopped"):
            continue  # a draft or an unstarted experiment served nobody: it may be deleted
        reason = (
            "removed; a stopped experiment stays in the registry as its record"
            if pub.get("status") == "stopped"
            else "removed; stop it instead"
        )
        out.append(Problem(f"experiments/{exp_id}.yaml", "", reason))
    for e in registry.experiments.values():
        name = relative_name(registry.file_of("experiments", e.id), root)
        pub = published.get(e.id)
        if pub is None:
            if e.status not in FIRST_PUBLISH:
                out.append(
                    Problem(name, "status", f"'{e.status}' but never published; start it first")
                )
            continue
        out += _transition_problems(e, name, pub)
    return out


def _transition_problems(e: Experiment, name: str, pub: Mapping) -> list[Problem]:
    out: list[Problem] = []
    was, now = pub["status"], e.status
    step = STATUSES.index(now) - STATUSES.index(was)
    if step < 0:
        out.append(Problem(name, "status", f"cannot go back from '{was}' (published) to '{now}'"))
    elif step > 1:
        skipped = STATUSES[STATUSES.index(was) + 1 : STATUSES.index(now)]
        out.append(
            Problem(
                name,
                "status",
                f"'{was}' -> '{now}' skips {', '.join(skipped)}; statuses move one step at a time",
            )
        )
    if was == "running":
        was_layer = pub.get("layer")
        was_range = tuple(float(x) for x in pub["layer_range"]) if pub.get("layer_range") else None
        now_range = tuple(float(x) for x in e.layer_range) if e.layer_range else None
        if (was_layer, was_range) != (e.layer, now_range):
            field = "layer" if was_layer != e.layer else "layer_range"
            was_text = f"{was_layer} {list(was_range)}" if was_layer and was_range else "no layer"
            out.append(Problem(name, field, f"range moved since it was published (was {was_text})"))
        # Anything else that would move users who are already in: salt, unit, weights, or a
        # lower allocation (raising it never moves anyone).
        if "salt" in pub and pub["salt"] != e.hash_salt:
            out.append(
                Problem(
                    name, "salt", f"changed while running (was '{pub['salt']}'); users would move"
                )
            )
        if "unit" in pub and pub["unit"] != e.unit:
            out.append(Problem(name, "unit", f"changed while running (was '{pub['unit']}')"))
        if "weights" in pub and [float(w) for w in pub["weights"]] != [
            v.weight for v in e.variants
        ]:
            out.append(
                Problem(
                    name,
                    "variants",
                    f"weights changed while running (were {pub['weights']}); users would move",
                )
            )
        if "allocation" in pub and e.allocation < float(pub["allocation"]):
            out.append(
                Problem(
                    name,
                    "allocation",
                    f"lowered while running (was {pub['allocation']}); only raising it keeps users in place",
                )
            )
    return out
