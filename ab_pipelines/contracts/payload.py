"""The edge payload, schema 1 (docs/edge-config.md): what the publisher signs and the SDK reads.

Written once for both sides: the publisher builds entries with :func:`experiment_entry` and
payloads with :func:`build_payload`; the SDK checks them with :func:`read_payload`, which also
precomputes each entry into a :class:`CompiledExperiment`. The text that is signed and hashed is
:func:`canonical_json`; ``content_sha`` is :func:`content_sha` of the experiments (and of the
holdouts, when there are any). Standard library only (the variant ranges come from
:mod:`ab_pipelines.contracts.hashing`).

Holdouts (docs/edge-config.md, "Holdouts"): an optional top-level ``holdouts`` object,
``{id: {"salt", "range": [0, round(10000·share)), "layers": [...]}}``, for the running holdouts.
A payload without it is valid (configs published before holdouts existed). Each experiment in a
held layer carries its holdouts, precomputed (``CompiledExperiment.holdouts``), so the rule is
one loop in the SDK; the Spark assigner reads the same ones through :func:`layer_holdouts`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ab_pipelines.contracts.hashing import BUCKETS, bucket, layer_buckets, variant_ranges

__all__ = [
    "EXPERIMENT_FIELDS",
    "GENERAL_GROUP",
    "HOLDOUT_FIELDS",
    "HOLDOUT_GROUP",
    "SCHEMA",
    "STATUSES",
    "CompiledExperiment",
    "LayerHoldout",
    "PayloadError",
    "ReadPayload",
    "build_payload",
    "canonical_json",
    "content_sha",
    "experiment_entry",
    "fixed_variant",
    "holdout_entry",
    "holdout_group",
    "layer_holdouts",
    "read_experiment",
    "read_payload",
]

SCHEMA = 1
# The statuses a payload carries: drafts and reviews are never published.
STATUSES = ("running", "stopped", "killed")
EXPERIMENT_FIELDS = (
    "status",
    "salt",
    "unit",
    "layer",
    "layer_buckets",
    "variants",
    "variant_buckets",
    "targeting",
    "overrides",
    "serve_variant",
)
HOLDOUT_FIELDS = ("salt", "range", "layers")


class PayloadError(ValueError):
    """A payload that does not follow schema 1; the message names the field."""


def canonical_json(obj) -> str:
    """The one text form that is signed and hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_sha(experiments: Mapping, holdouts: Mapping | None = None) -> str:
    """sha256 (hex) of the experiments' canonical JSON: the payload's ``content_sha``; with
    holdouts, of ``{"experiments": ..., "holdouts": ...}`` (so a payload without holdouts keeps
    the sha it always had)."""
    content = {"experiments": experiments, "holdouts": holdouts} if holdouts else experiments
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def fixed_variant(status: str, variants: Sequence[str], serve: str | None) -> str | None:
    """What a killed or stopped experiment serves everyone: killed the baseline, stopped
    ``serve`` (its shipped variant) or else the baseline; None otherwise (running)."""
    if status == "killed":
        return variants[0]
    if status == "stopped":
        return serve or variants[0]
    return None


def experiment_entry(
    *,
    status: str,
    salt: str,
    unit: str,
    variants: Sequence[str],
    weights: Sequence[float],
    allocation: float = 1.0,
    layer: str | None = None,
    layer_range: Sequence[float] | None = None,
    targeting: Mapping[str, Sequence] | None = None,
    overrides: Mapping[str, str] | None = None,
    shipped_variant: str | None = None,
) -> dict:
    """One experiment as the SDK reads it; ranges are computed here, once, for every client.

    In a layer the variant ranges cover the full 10,000 buckets (the layer range does the
    allocating); outside one they are scaled by ``allocation``.

    >>> e = experiment_entry(status="running", salt="s", unit="user_id",
    ...                      variants=["a", "b"], weights=[0.5, 0.5], allocation=0.5)
    >>> e["variant_buckets"], e["serve_variant"]
    ([[0, 2500], [5000, 7500]], None)
    """
    in_layer = layer is not None
    ranges = variant_ranges(list(weights), 1.0 if in_layer else allocation)
    return {
        "status": status,
        "salt": salt,
        "unit": unit,
        "layer": layer,
        "layer_buckets": list(layer_buckets(layer_range or (0.0, 1.0))) if in_layer else None,
        "variants": list(variants),
        "variant_buckets": [list(r) for r in ranges],
        "targeting": {k: list(v) for k, v in sorted((targeting or {}).items())},
        "overrides": dict(sorted((overrides or {}).items())),
        "serve_variant": fixed_variant(status, variants, shipped_variant),
    }


def holdout_entry(*, salt: str, share: float, layers: Sequence[str]) -> dict:
    """One running holdout as the SDK reads it: the units with ``bucket(salt, unit)`` in
    ``range`` get no variant in any experiment of ``layers``.

    >>> holdout_entry(salt="h", share=0.05, layers=["search", "checkout"])
    {'salt': 'h', 'range': [0, 500], 'layers': ['checkout', 'search']}
    """
    return {"salt": salt, "range": [0, round(BUCKETS * share)], "layers": sorted(set(layers))}


def build_payload(
    experiments: Mapping,
    version: int,
    published_at: str | None,
    holdouts: Mapping | None = None,
) -> dict:
    """The payload of schema 1 around compiled ``experiments`` (before signing); ``holdouts``
    (compiled by :func:`holdout_entry`) only when there are any."""
    payload = {
        "schema": SCHEMA,
        "version": version,
        "published_at": published_at,
        "content_sha": content_sha(experiments, holdouts),
        "experiments": experiments,
    }
    if holdouts:
        payload["holdouts"] = holdouts
    return payload


@dataclass(frozen=True, slots=True)
class LayerHoldout:
    """A running holdout as an experiment of one of its layers applies it: a unit whose
    ``bucket(salt, unit)`` lies in [lo, hi) gets no variant."""

    id: str
    salt: str
    lo: int
    hi: int


#: the two groups of a holdout's analysis (rule 8b, docs/edge-config.md "Holdouts"): the held-out
#: units, and as many units just above them that see the held layers' experiments.
HOLDOUT_GROUP, GENERAL_GROUP = "holdout", "general"


def holdout_group(x: LayerHoldout, unit: str) -> str | None:
    """Rule 8b: a unit's group in holdout ``x``: "holdout" when ``bucket(x.salt, unit)`` is in
    the held range ``[lo, hi)``, "general" in the equally wide range just above it
    ``[hi, 2·hi − lo)`` (units the layers' experiments are served to: the holdout scorecard's
    comparison group), else None (not part of the holdout's analysis)."""
    b = bucket(x.salt, unit)
    if x.lo <= b < x.hi:
        return HOLDOUT_GROUP
    if x.hi <= b < 2 * x.hi - x.lo:
        return GENERAL_GROUP
    return None


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """One payload entry, checked and precomputed so that assigning does no parsing."""

    id: str
    status: str
    salt: str
    unit: str
    by_user: bool
    layer: str | None
    layer_lo: int
    layer_hi: int
    variants: tuple[str, ...]
    variant_set: frozenset[str]
    ranges: tuple[tuple[int, int], ...]
    targeting: tuple[tuple[str, frozenset[str]], ...]
    overrides: Mapping[str, str]
    fixed: str | None  # what killed/stopped serve; None while running
    holdouts: tuple[LayerHoldout, ...] = ()  # the running holdouts of its layer, by id

    @property
    def baseline(self) -> str:
        return self.variants[0]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bucket_pair(v: object, where: str) -> tuple[int, int]:
    if not (isinstance(v, list | tuple) and len(v) == 2 and all(_is_int(x) for x in v)):
        raise PayloadError(f"{where} must be a pair of integers")
    lo, hi = v
    if not 0 <= lo <= hi <= BUCKETS:
        raise PayloadError(f"{where} [{lo}, {hi}] is not within [0, {BUCKETS}]")
    return lo, hi


def _str_list(v: object, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise PayloadError(f"{where} must be a list of strings")
    return v


def read_experiment(exp_id: str, e: object) -> CompiledExperiment:
    """Check one ``experiments`` entry against schema 1 and precompute it, or PayloadError."""
    where = f"experiments.{exp_id}"
    if not isinstance(e, dict):
        raise PayloadError(f"{where} must be an object")
    missing = [k for k in EXPERIMENT_FIELDS if k not in e]
    if missing:
        raise PayloadError(f"{where} lacks field(s) {', '.join(missing)}")
    status = e["status"]
    if status not in STATUSES:
        raise PayloadError(f"{where}.status {status!r} is not one of {', '.join(STATUSES)}")
    for k in ("salt", "unit"):
        if not isinstance(e[k], str) or not e[k]:
            raise PayloadError(f"{where}.{k} must be a non-empty string")
    variants = _str_list(e["variants"], f"{where}.variants")
    if not variants or len(set(variants)) != len(variants) or "" in variants:
        raise PayloadError(f"{where}.variants must be distinct non-empty strings, at least one")
    layer = e["layer"]
    if layer is None:
        if e["layer_buckets"] is not None:
            raise PayloadError(f"{where}.layer_buckets must be null outside a layer")
        layer_lo, layer_hi = 0, BUCKETS
    elif isinstance(layer, str) and layer:
        layer_lo, layer_hi = _bucket_pair(e["layer_buckets"], f"{where}.layer_buckets")
    else:
        raise PayloadError(f"{where}.layer must be a non-empty string or null")
    vb = e["variant_buckets"]
    if not isinstance(vb, list) or len(vb) != len(variants):
        raise PayloadError(f"{where}.variant_buckets must have one range per variant")
    ranges = tuple(_bucket_pair(r, f"{where}.variant_buckets[{i}]") for i, r in enumerate(vb))
    targeting = e["targeting"]
    if not isinstance(targeting, dict):
        raise PayloadError(f"{where}.targeting must be an object")
    compiled_targeting = tuple(
        (k, frozenset(_str_list(v, f"{where}.targeting.{k}"))) for k, v in targeting.items()
    )
    overrides = e["overrides"]
    if not isinstance(overrides, dict):
        raise PayloadError(f"{where}.overrides must be an object")
    for unit, v in overrides.items():
        if v not in variants:
            raise PayloadError(f"{where}.overrides.{unit} {v!r} is not a variant")
    serve = e["serve_variant"]
    if serve is not None and serve not in variants:
        raise PayloadError(f"{where}.serve_variant {serve!r} is not a variant")
    return CompiledExperiment(
        id=exp_id,
        status=status,
        salt=e["salt"],
        unit=e["unit"],
        by_user=e["unit"] == "user_id",
        layer=layer,
        layer_lo=layer_lo,
        layer_hi=layer_hi,
        variants=tuple(variants),
        variant_set=frozenset(variants),
        ranges=ranges,
        targeting=compiled_targeting,
        overrides=dict(overrides),
        # killed serves the baseline whatever serve_variant says; stopped its shipped variant
        fixed=fixed_variant(status, variants, serve),
    )


def _read_holdouts(holdouts: object) -> dict[str, tuple[LayerHoldout, list[str]]]:
    """Check the ``holdouts`` object; {id: (LayerHoldout, layers)} in id order."""
    if not isinstance(holdouts, dict):
        raise PayloadError("holdouts must be an object")
    out = {}
    for hid in sorted(holdouts):
        h, where = holdouts[hid], f"holdouts.{hid}"
        if not isinstance(h, dict):
            raise PayloadError(f"{where} must be an object")
        missing = [k for k in HOLDOUT_FIELDS if k not in h]
        if missing:
            raise PayloadError(f"{where} lacks field(s) {', '.join(missing)}")
        if not isinstance(h["salt"], str) or not h["salt"]:
            raise PayloadError(f"{where}.salt must be a non-empty string")
        lo, hi = _bucket_pair(h["range"], f"{where}.range")
        layers = _str_list(h["layers"], f"{where}.layers")
        out[str(hid)] = (LayerHoldout(str(hid), h["salt"], lo, hi), layers)
    return out


def layer_holdouts(holdouts: Mapping | None, layer: str | None) -> tuple[LayerHoldout, ...]:
    """The holdouts of a payload's ``holdouts`` object that hold ``layer``, in id order (an
    experiment outside a layer is never held out)."""
    if not holdouts or layer is None:
        return ()
    return tuple(h for h, layers in _read_holdouts(holdouts).values() if layer in layers)


@dataclass(frozen=True)
class ReadPayload:
    """A payload that follows schema 1, its experiments precomputed."""

    version: int
    content_sha: str
    published_at: str | None
    experiments: Mapping[str, CompiledExperiment]
    holdouts: Mapping[str, LayerHoldout] = field(default_factory=dict)


def read_payload(payload: object) -> ReadPayload:
    """Check a payload against schema 1 (and its ``content_sha``) and precompute it, or
    PayloadError naming the field."""
    if not isinstance(payload, dict):
        raise PayloadError("the payload is not a JSON object")
    if payload.get("schema") != SCHEMA or not _is_int(payload.get("schema")):
        raise PayloadError(f"schema {payload.get('schema')!r} is not {SCHEMA}")
    version = payload.get("version")
    if not _is_int(version) or version < 1:
        raise PayloadError(f"version {version!r} is not an integer >= 1")
    experiments = payload.get("experiments")
    if not isinstance(experiments, dict):
        raise PayloadError("experiments must be an object")
    holdouts = payload.get("holdouts")
    held = _read_holdouts(holdouts) if holdouts is not None else {}
    sha = payload.get("content_sha")
    if not isinstance(sha, str):
        raise PayloadError("content_sha must be a string")
    if sha != content_sha(experiments, holdouts):
        what = "the experiments and holdouts" if holdouts else "the experiments"
        raise PayloadError(f"content_sha does not match {what}")
    published_at = payload.get("published_at")
    if published_at is not None and not isinstance(published_at, str):
        raise PayloadError("published_at must be a string")
    compiled = {}
    for k, v in experiments.items():
        exp = read_experiment(str(k), v)
        if exp.layer is not None and held:
            exp = replace(
                exp, holdouts=tuple(h for h, layers in held.values() if exp.layer in layers)
            )
        compiled[str(k)] = exp
    return ReadPayload(version, sha, published_at, compiled, {k: h for k, (h, _) in held.items()})
