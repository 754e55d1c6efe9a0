"""Approval state (CONTRACTS section 3), written once: an experiment's content sha, and whether
its approvals make it approved. The approver (``abp approve``), ``abp validate`` and the dashboard
all ask here. Standard library only: callers read the YAML and pass the mapping.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "LIFECYCLE_FIELDS",
    "NEEDS_APPROVAL",
    "ApprovalState",
    "approval_of",
    "approval_state",
    "content_sha",
    "same_person",
]

# Moving approved -> running -> stopped (and naming the winner) is not a content edit.
LIFECYCLE_FIELDS = frozenset({"status", "approvals", "shipped_variant"})
# The statuses that need a current approval by someone other than the owner.
NEEDS_APPROVAL = frozenset({"approved", "running", "stopped"})


def _json_default(value: object) -> str:
    if isinstance(value, dt.date | dt.datetime):  # YAML reads unquoted dates as dates
        return value.isoformat()
    if isinstance(value, bytes):  # a !!binary scalar
        return "base64:" + base64.b64encode(value).decode()
    raise TypeError(f"cannot hash a {type(value).__name__} in experiment content")


def content_sha(data: Mapping) -> str:
    """sha256 (hex) of an experiment's content: its YAML mapping without the lifecycle fields.

    The mapping is hashed as canonical JSON (sorted keys, no spaces, dates as ISO strings), so
    layout, comments, key order and quoting do not matter, while any change of a value does.

    >>> a = content_sha({"id": "x", "variants": [{"id": "a", "weight": 0.5}], "status": "draft"})
    >>> b = content_sha({"status": "running", "variants": [{"weight": 0.5, "id": "a"}], "id": "x"})
    >>> a == b
    True
    """
    content = {k: v for k, v in data.items() if k not in LIFECYCLE_FIELDS}
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def same_person(a: object, b: object) -> bool:
    """Whether two emails name the same person (case and surrounding spaces do not count)."""
    return str(a).strip().casefold() == str(b).strip().casefold()


def approval_of(by: object, sha: str, owner: object, current_sha: str | None) -> str:
    """One approval's state: ``by the owner`` (never counts), ``current`` (of the current
    content) or ``stale`` (the content changed since)."""
    if same_person(by, owner):
        return "by the owner"
    return "current" if sha == current_sha else "stale"


@dataclass(frozen=True)
class ApprovalState:
    """Whether an experiment is approved: ``state`` is ``approved``, ``missing`` (no approval by
    someone other than the owner) or ``stale`` (none of the content as it is now);
    ``last_reviewer`` is the last approver who is not the owner, if any."""

    state: str
    last_reviewer: str | None

    @property
    def approved(self) -> bool:
        return self.state == "approved"


def approval_state(
    owner: object, approvals: Iterable[tuple[str, str]], current_sha: str | None
) -> ApprovalState:
    """The approval state of an experiment from its ``(by, sha)`` approvals and current sha.

    >>> approval_state("ana@x", [("lee@x", "abc")], "abc").state
    'approved'
    >>> approval_state("ana@x", [("ANA@x", "abc")], "abc").state
    'missing'
    """
    reviews = [(by, sha) for by, sha in approvals if not same_person(by, owner)]
    if not reviews:
        return ApprovalState("missing", None)
    ok = any(sha == current_sha for _, sha in reviews)
    return ApprovalState("approved" if ok else "stale", reviews[-1][0])
