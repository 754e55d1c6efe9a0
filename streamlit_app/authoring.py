"""Drafting a new experiment from the dashboard: built, validated with ``abp validate``'s rules, and
written to ``experiments/<id>.yaml`` with ``status: draft`` for review in git. Never published.

Validation runs :func:`ab_pipelines.config.validate_registry` (what ``abp validate`` runs) on a
temporary copy of the registry with the draft added, against the last published state, so the
draft is judged exactly as it would be once committed. Problems naming the draft's file block the
write; problems the registry already had elsewhere are reported apart and do not.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ab_pipelines.config.validate import UNITS_FILE, validate_registry

__all__ = [
    "DraftCheck",
    "DraftRefused",
    "check_draft",
    "draft_experiment",
    "draft_file",
    "draft_yaml",
    "write_draft",
]

# An id names its file: letters, digits, "_" and "-" only, so a draft can never write elsewhere.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_HEADER = (
    "# Drafted in the dashboard. Review it, set status: in_review and open a pull request;\n"
    "# a reviewer approves it with 'abp approve'. Nothing is published until then.\n"
)


class DraftRefused(ValueError):
    """The draft does not validate; ``problems`` has one line each. Nothing was written."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class DraftCheck:
    """What validation said: the draft's own problems, and those the registry already had."""

    file: str  # "experiments/<id>.yaml"
    problems: list[str] = field(default_factory=list)
    registry_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _clean_list(values: Iterable[str] | None) -> list[str]:
    return [v.strip() for v in values or () if v and str(v).strip()]


def draft_experiment(
    *,
    id: str,
    name: str,
    owner: str,
    start_date: dt.date,
    variants: Sequence[Mapping[str, Any]],
    hypothesis: str = "",
    end_date: dt.date | None = None,
    unit: str = "user_id",
    allocation: float = 1.0,
    layer: str | None = None,
    layer_range: tuple[float, float] | None = None,
    targeting: Mapping[str, Sequence[str]] | None = None,
    primary: Sequence[str] = (),
    secondary: Sequence[str] = (),
    guardrails: Sequence[Mapping[str, Any]] = (),
    analysis: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The YAML mapping of a new experiment (CONTRACTS section 3), with ``status: draft``.

    Empty optional fields are left out, so the file holds only what the author chose; a layer is
    written with its range and without an allocation (a layer's range is the share it takes).
    """
    doc: dict[str, Any] = {
        "id": id.strip(),
        "name": name.strip(),
        "owner": owner.strip(),
        "hypothesis": hypothesis.strip(),
        "status": "draft",
        "start_date": start_date,
    }
    if not doc["hypothesis"]:
        del doc["hypothesis"]
    if end_date is not None:
        doc["end_date"] = end_date
    if unit and unit.strip() and unit.strip() != "user_id":
        doc["unit"] = unit.strip()
    if layer and layer.strip():
        doc["layer"] = layer.strip()
        lo, hi = layer_range or (0.0, 1.0)
        doc["layer_range"] = [float(lo), float(hi)]
    else:
        doc["allocation"] = float(allocation)
    if targeting:
        doc["targeting"] = {k: _clean_list(v) for k, v in targeting.items() if _clean_list(v)}
    doc["variants"] = [
        {"id": str(v["id"]).strip(), "weight": float(v["weight"])}
        for v in variants
        if v.get("id") is not None and str(v["id"]).strip()
    ]
    metrics: dict[str, Any] = {}
    if _clean_list(primary):
        metrics["primary"] = _clean_list(primary)
    if _clean_list(secondary):
        metrics["secondary"] = _clean_list(secondary)
    guards = [
        {"metric": str(g["metric"]).strip(), "max_relative_change": float(g["max_relative_change"])}
        for g in guardrails
        if g.get("metric") and g.get("max_relative_change") is not None
    ]
    if guards:
        metrics["guardrails"] = guards
    doc["metrics"] = metrics
    if analysis:
        doc["analysis"] = {k: v for k, v in analysis.items() if v is not None}
    return doc


class _FlowDumper(yaml.SafeDumper):
    """Block style for the document, flow style for leaf lists and mappings (as the registry is)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)  # "  - item" under its key, as in the registry


def _represent_leaf(dumper: yaml.SafeDumper, data: Any):
    flow = all(
        not isinstance(v, dict | list) for v in (data.values() if isinstance(data, dict) else data)
    )
    if isinstance(data, dict):
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowDumper.add_representer(dict, _represent_leaf)
_FlowDumper.add_representer(list, _represent_leaf)


def draft_yaml(draft: Mapping[str, Any]) -> str:
    """The draft as the file to commit: a header saying what to do next, then the YAML."""
    body = yaml.dump(
        dict(draft), Dumper=_FlowDumper, sort_keys=False, allow_unicode=True, width=100
    )
    return _HEADER + body


def draft_file(draft: Mapping[str, Any]) -> str:
    """The draft's file name as the registry names it, e.g. ``experiments/checkout_cta.yaml``."""
    return f"experiments/{str(draft.get('id', '')).strip()}.yaml"


def _copy_registry(root: Path, into: Path) -> None:
    for folder in ("experiments", "metrics"):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, into / folder)
        else:
            (into / folder).mkdir()
    if (root / UNITS_FILE).exists():
        shutil.copy2(root / UNITS_FILE, into / UNITS_FILE)


def check_draft(
    draft: Mapping[str, Any], registry_root: Path, published_state: Mapping | None = None
) -> DraftCheck:
    """Validate ``draft`` as ``abp validate`` would once it is committed beside the registry."""
    exp_id = str(draft.get("id", "")).strip()
    name = draft_file(draft)
    if not _ID.match(exp_id):
        return DraftCheck(
            name,
            [
                f"{name}: field 'id': '{exp_id}' must be letters, digits, '_' or '-' (it names the file)"
            ],
        )
    root = Path(registry_root)
    taken = [p for p in (root / "experiments").glob(f"{exp_id}.y*ml")]
    if taken:
        return DraftCheck(
            name,
            [f"{name}: field 'id': '{exp_id}' is taken ({taken[0].name} exists); choose a new id"],
        )
    with tempfile.TemporaryDirectory(prefix="abp-draft-") as tmp:
        copy = Path(tmp)
        _copy_registry(root, copy)
        (copy / name).write_text(draft_yaml(draft), encoding="utf-8")
        problems = validate_registry(copy, published_state)
    mine = [str(p) for p in problems if p.file == name]
    others = [str(p) for p in problems if p.file != name]
    return DraftCheck(name, mine, others)


def write_draft(
    draft: Mapping[str, Any], registry_root: Path, published_state: Mapping | None = None
) -> Path:
    """Validate and write ``experiments/<id>.yaml``; never overwrites, never publishes.

    Raises:
        DraftRefused: the draft has problems (nothing is written).
    """
    if draft.get("status", "draft") != "draft":
        raise DraftRefused(
            [f"{draft_file(draft)}: field 'status': a new experiment starts as draft"]
        )
    check = check_draft(draft, registry_root, published_state)
    if not check.ok:
        raise DraftRefused(check.problems)
    path = Path(registry_root) / check.file
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as f:  # "x": an existing file is never replaced
        f.write(draft_yaml(draft))
    return path
