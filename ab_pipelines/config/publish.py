"""The config plane: compile the registry plus kills into the signed edge payload, and the kill switch.

Layout under ``$ABP_HOME/edge/`` (docs/edge-config.md):

    config.json                 the current signed payload (replaced atomically)
    versions/config-v<N>.json   an immutable copy of every version
    registry_state.json         every experiment's last published status and layer range, which
                                ``abp validate`` checks transitions against

The version moves only when the compiled experiments or running holdouts change. A registry that does not validate is
never published: the last good payload keeps serving. A kill does not need the registry at all: it
is applied to the payload that is serving, so a broken registry cannot hold a kill back, and every
later publish applies ``ops.kills`` again, so no republish undoes it.

A running bandit is compiled with the weights its analysis computed last (gold.bandit_weights;
the YAML's until then), its layer range, salt and allocation as the YAML says; every version that
changes a bandit's weights is recorded in ops.bandit_allocations, the periods its analysis weights
by (:mod:`ab_pipelines.config.allocations`), and the audit row lists the weights served.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa

from ab_pipelines.assignment.signing import sign_payload
from ab_pipelines.config.allocations import record_allocations, weights_to_serve
from ab_pipelines.config.models import Experiment
from ab_pipelines.config.registry import Registry, RegistryError, load_registry
from ab_pipelines.contracts.payload import (
    SCHEMA,
    build_payload,
    content_sha,
    experiment_entry,
    fixed_variant,
    holdout_entry,
)
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import OPS_AUDIT_LOG, OPS_KILLS
from ab_pipelines.settings import Paths
from ab_pipelines.settings import now as settings_now

__all__ = [
    "PAYLOAD_SCHEMA",
    "PublishRefused",
    "PublishResult",
    "compile_experiments",
    "compile_holdouts",
    "current_payload",
    "kill",
    "published_state",
    "publish",
]

PAYLOAD_SCHEMA = SCHEMA  # the schema of the payloads published here


class PublishRefused(ValueError):
    """The registry does not validate; ``problems`` has one line each. Nothing was published."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class PublishResult:
    version: int
    changed: bool
    path: Path
    experiments: tuple[str, ...]


def _now() -> dt.datetime:
    return settings_now().replace(microsecond=0)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def compile_experiment(e: Experiment, killed: bool, weights: list[float] | None = None) -> dict:
    """One experiment as the SDK reads it (the payload contract's entry, computed once here);
    ``weights``: a bandit's weights to serve instead of the YAML's."""
    return experiment_entry(
        status="killed" if killed else e.status,
        salt=e.hash_salt,
        unit=e.unit,
        variants=e.variant_ids,
        weights=list(weights) if weights is not None else [v.weight for v in e.variants],
        allocation=e.allocation,
        layer=e.layer,
        layer_range=e.layer_range,
        targeting=e.targeting,
        overrides=e.overrides,
        shipped_variant=e.shipped_variant,
    )


def compile_experiments(
    registry: Registry, killed: set[str], bandit_weights: Mapping[str, list[float]] | None = None
) -> dict:
    """Running, stopped and killed experiments (a kill of any registered experiment counts);
    ``bandit_weights``: a bandit's weights to serve (:func:`~.allocations.weights_to_serve`)."""
    bandit_weights = bandit_weights or {}
    return {
        e.id: compile_experiment(e, e.id in killed, bandit_weights.get(e.id))
        for e in sorted(registry.experiments.values(), key=lambda e: e.id)
        if e.status in ("running", "stopped") or e.id in killed
    }


def compile_holdouts(registry: Registry) -> dict:
    """The running holdouts, as the payload's ``holdouts`` object (empty: none)."""
    return {
        h.id: holdout_entry(salt=h.hash_salt, share=h.share, layers=h.layers)
        for h in sorted(registry.holdouts.values(), key=lambda h: h.id)
        if h.status == "running"
    }


def _edge(home: Paths) -> Path:
    return home.edge


def current_payload(home: Paths) -> dict | None:
    """The payload serving now (read back from our own signed file), or None."""
    path = _edge(home) / "config.json"
    if not path.exists():
        return None
    return json.loads(json.loads(path.read_text())["payload"])


def published_state(home: Paths) -> dict | None:
    path = _edge(home) / "registry_state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _latest_version(home: Paths) -> int:
    folder = _edge(home) / "versions"
    versions = (
        [int(p.stem.removeprefix("config-v")) for p in folder.glob("config-v*.json")]
        if folder.is_dir()
        else []
    )
    return max(versions, default=0)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _edge_lock(home: Paths):
    """One publisher at a time: a kill and a publish never interleave (no lost kill, no twin version)."""
    folder = _edge(home)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _audit(
    lake: Lake,
    actor: str,
    action: str,
    experiment_id: str | None,
    detail: dict,
    now: dt.datetime,
) -> None:
    row = {
        "at": now,
        "actor": actor,
        "action": action,
        "experiment_id": experiment_id,
        "detail": orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
    }
    lake.write_arrow(OPS_AUDIT_LOG, pa.Table.from_pylist([row], schema=OPS_AUDIT_LOG.schema))


def killed_experiments(lake: Lake) -> set[str]:
    return set(
        lake.read_arrow(OPS_KILLS, columns=["experiment_id"]).column("experiment_id").to_pylist()
    )


def _serve(
    home: Paths,
    experiments: dict,
    holdouts: dict,
    actor: str,
    now: dt.datetime,
    detail: Mapping | None = None,
) -> PublishResult:
    """Sign and write a new version if ``experiments`` or ``holdouts`` differ from what is serving."""
    sha = content_sha(experiments, holdouts)
    current = current_payload(home)
    path = _edge(home) / "config.json"
    if current is not None and current.get("content_sha") == sha:
        return PublishResult(current["version"], False, path, tuple(experiments))
    version = max(_latest_version(home), current["version"] if current else 0) + 1
    payload = build_payload(experiments, version, _iso(now), holdouts)
    text = json.dumps(sign_payload(payload), indent=None)
    copy = _edge(home) / "versions" / f"config-v{version}.json"
    copy.parent.mkdir(parents=True, exist_ok=True)
    with open(copy, "x", encoding="utf-8") as f:  # a version is written once, never replaced
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    copy.chmod(0o444)
    _write_atomic(path, text)
    _audit(
        Lake(home),
        actor,
        "publish",
        None,
        {
            "version": version,
            "content_sha": sha,
            "experiments": sorted(experiments),
            **({"holdouts": sorted(holdouts)} if holdouts else {}),
            **(detail or {}),
        },
        now,
    )
    return PublishResult(version, True, path, tuple(experiments))


def publish(
    home: Paths,
    registry_root: Path | None = None,
    actor: str = "abp",
    now: dt.datetime | None = None,
) -> PublishResult:
    """Validate the registry against the last published state, compile it with the kills, serve it."""
    with _edge_lock(home):
        return _publish(home, registry_root, actor, now or _now())


def _publish(
    home: Paths, registry_root: Path | None, actor: str, now: dt.datetime
) -> PublishResult:
    from ab_pipelines.config.validate import validate_registry

    state = published_state(home)
    problems = [str(p) for p in validate_registry(registry_root, state)]
    if problems:
        raise PublishRefused(problems)
    try:
        registry = load_registry(registry_root)
    except RegistryError as exc:
        raise PublishRefused(exc.problems) from None
    lake = Lake(home)
    killed = killed_experiments(lake)
    # A running bandit serves the weights its analysis computed last (the YAML's until then).
    bandits = {
        e.id: e
        for e in registry.experiments.values()
        if e.is_bandit and e.status == "running" and e.id not in killed
    }
    updates = weights_to_serve(lake, bandits)
    experiments = compile_experiments(registry, killed, updates)
    served = {
        e.id: (e.variant_ids, updates.get(e.id, [v.weight for v in e.variants]))
        for e in bandits.values()
    }
    detail = {"bandit_weights": {k: w for k, (_, w) in sorted(served.items())}} if served else None
    result = _serve(home, experiments, compile_holdouts(registry), actor, now, detail)
    sources = {k: ("bandit update" if k in updates else "registry") for k in served}
    record_allocations(
        lake,
        {k: (v, w, sources[k]) for k, (v, w) in served.items()},
        result.version,
        now,
    )
    new_state = {
        "version": result.version,
        "experiments": {
            e.id: {
                "status": e.status,
                "layer": e.layer,
                "layer_range": list(e.layer_range) if e.layer_range else None,
                "salt": e.hash_salt,
                "unit": e.unit,
                "weights": [v.weight for v in e.variants],
                "allocation": e.allocation,
            }
            for e in registry.experiments.values()
        },
    }
    _write_atomic(
        _edge(home) / "registry_state.json", json.dumps(new_state, indent=2, sort_keys=True)
    )
    return result


def kill(
    home: Paths,
    experiment_id: str,
    reason: str,
    by: str,
    registry_root: Path | None = None,
    now: dt.datetime | None = None,
) -> PublishResult:
    """Kill switch: record who/when/why, and serve the baseline to everyone from the next version."""
    with _edge_lock(home):
        return _kill(home, experiment_id, reason, by, registry_root, now or _now())


def _kill(
    home: Paths,
    experiment_id: str,
    reason: str,
    by: str,
    registry_root: Path | None,
    now: dt.datetime,
) -> PublishResult:
    if not reason.strip() or not by.strip():
        raise ValueError("a kill needs --reason and --by")
    current = current_payload(home) or {"experiments": {}}
    experiments = dict(current["experiments"])
    holdouts = current.get("holdouts") or {}  # a kill keeps the holdouts serving
    if experiment_id not in experiments:
        try:
            registry = load_registry(registry_root)
        except RegistryError:
            registry = None
        exp = registry.experiments.get(experiment_id) if registry else None
        if exp is None:
            known = sorted(set(experiments) | set(registry.experiments if registry else []))
            raise ValueError(
                f"unknown experiment '{experiment_id}'; known: {', '.join(known) or 'none'}"
            )
        experiments[experiment_id] = compile_experiment(exp, killed=True)
    lake = Lake(home)
    if experiment_id not in killed_experiments(lake):  # the first kill's who, when and why stay
        row = {"experiment_id": experiment_id, "killed_at": now, "by": by, "reason": reason}
        lake.write_arrow(OPS_KILLS, pa.Table.from_pylist([row], schema=OPS_KILLS.schema))
    _audit(lake, by, "kill", experiment_id, {"reason": reason}, now)
    entry = dict(experiments[experiment_id])
    entry["status"] = "killed"
    entry["serve_variant"] = fixed_variant("killed", entry["variants"], None)
    experiments[experiment_id] = entry
    return _serve(home, experiments, holdouts, by, now)
