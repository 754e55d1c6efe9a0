"""Approvals: a reviewer signs the sha of an experiment's content; any later edit makes it stale.

What the sha is and when approvals count is the contract's (:mod:`ab_pipelines.contracts.approval`);
this module reads the YAML and writes approvals into it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from ab_pipelines.config.models import Approval
from ab_pipelines.contracts.approval import LIFECYCLE_FIELDS, same_person
from ab_pipelines.contracts.approval import content_sha as mapping_sha

__all__ = ["LIFECYCLE_FIELDS", "approve", "content_sha", "same_person"]


def content_sha(path_or_mapping: str | Path | Mapping) -> str:
    """sha256 (hex) of an experiment's content (a YAML file, or its mapping): the contract's
    :func:`ab_pipelines.contracts.approval.content_sha`, which ignores the lifecycle fields.

    Example:
        >>> a = content_sha({"id": "x", "variants": [{"id": "a", "weight": 0.5}], "status": "draft"})
        >>> b = content_sha({"status": "running", "variants": [{"weight": 0.5, "id": "a"}], "id": "x"})
        >>> a == b
        True
    """
    if isinstance(path_or_mapping, Mapping):
        return mapping_sha(path_or_mapping)
    data = yaml.safe_load(Path(path_or_mapping).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path_or_mapping}: expected a mapping of fields.")
    return mapping_sha(data)


def _utc_z(at: dt.datetime) -> str:
    if at.tzinfo is None:  # a naive time is taken to be UTC, like every time in the platform
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_TOP_KEY = re.compile(r"^[^\s#-][^:]*:")
_APPROVALS_KEY = re.compile(r"^approvals:\s*(#.*)?$")
_ITEM = re.compile(r"^(\s*)- ")
_PLAIN = re.compile(r"[A-Za-z0-9_.+-]+@[A-Za-z0-9_.-]+")


def _insert_approval(text: str, item: str) -> str:
    """``text`` with ``item`` (a flow mapping) appended to its block-style ``approvals`` list."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    starts = [i for i, line in enumerate(lines) if _APPROVALS_KEY.match(line)]
    if not starts:
        return "".join(lines) + f"approvals:\n  - {item}\n"
    start = starts[0]
    end = start + 1
    while end < len(lines) and not _TOP_KEY.match(lines[end]):
        end += 1
    body = lines[start + 1 : end]
    indent = next((m.group(1) for line in body if (m := _ITEM.match(line))), "  ")
    # Insert after the last non-blank line of the block, so trailing blank lines stay trailing.
    last = end
    while last > start + 1 and not lines[last - 1].strip():
        last -= 1
    return "".join([*lines[:last], f"{indent}- {item}\n", *lines[last:]])


def approve(path: str | Path, by: str, at: dt.datetime | None = None) -> Approval:
    """Append an approval by ``by`` of the file's current content to its ``approvals`` list.

    The rest of the file's text is kept as it is; if the approvals list has a layout this cannot
    extend safely, the file is re-dumped (key order kept, comments lost).

    Args:
        path: the experiment's YAML file.
        by: the reviewer's email; must not be the experiment's owner.
        at: when (default: now); naive times are taken as UTC.

    Returns:
        The approval written.

    Raises:
        ValueError: ``by`` is the owner or empty, or the file is not a mapping.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of fields, cannot approve it.")
    if not by.strip():
        raise ValueError(f"{path}: an approval needs the reviewer's email in 'by'.")
    if same_person(by, data.get("owner")):
        raise ValueError(
            f"{path}: {by} owns '{data.get('id')}' and cannot approve it; ask a reviewer."
        )
    approval = Approval(by=by, at=_utc_z(at or dt.datetime.now(dt.UTC)), sha=content_sha(data))
    entry = {"by": approval.by, "at": _utc_z(approval.at), "sha": approval.sha}
    before = list(data.get("approvals") or [])

    # A plain email needs no quotes; anything else is written as a (YAML-compatible) JSON string.
    who = by if _PLAIN.fullmatch(by) else json.dumps(by)
    new_text = _insert_approval(text, f"{{by: {who}, at: {entry['at']}, sha: {approval.sha}}}")
    try:
        new_data = yaml.safe_load(new_text)
    except yaml.YAMLError:
        new_data = None
    if not _appended_exactly(data, new_data, before, entry):
        new_data = {**data, "approvals": [*before, entry]}
        new_text = yaml.safe_dump(new_data, sort_keys=False, allow_unicode=True)
    path.write_text(new_text, encoding="utf-8")
    return approval


def _appended_exactly(old: dict, new: object, before: list, entry: dict) -> bool:
    """Whether ``new`` is ``old`` with only ``entry`` appended to its approvals."""
    if not isinstance(new, dict):
        return False
    rest = {k: v for k, v in new.items() if k != "approvals"}
    if rest != {k: v for k, v in old.items() if k != "approvals"}:
        return False
    approvals = new.get("approvals")
    if not isinstance(approvals, list) or approvals[:-1] != before or not approvals:
        return False
    last = approvals[-1]
    at = last.get("at") if isinstance(last, dict) else None
    at_text = _utc_z(at) if isinstance(at, dt.datetime) else at
    return last == {**entry, "at": last.get("at")} and at_text == entry["at"]
