"""The approval contract: one answer to "approved?" for the approver, validate and the dashboard."""

from __future__ import annotations

import datetime as dt

from ab_pipelines.config import approvals
from ab_pipelines.contracts.approval import (
    LIFECYCLE_FIELDS,
    approval_of,
    approval_state,
    content_sha,
)


def test_the_config_module_hashes_as_the_contract_does(tmp_path):
    data = {"id": "x", "owner": "ana@x", "start_date": dt.date(2026, 11, 2), "status": "draft"}
    path = tmp_path / "x.yaml"
    path.write_text("id: x\nowner: ana@x\nstart_date: 2026-11-02\nstatus: running\n")
    assert approvals.content_sha(path) == approvals.content_sha(data) == content_sha(data)
    assert approvals.LIFECYCLE_FIELDS is LIFECYCLE_FIELDS


def test_states():
    assert approval_state("ana@x", [], "s").state == "missing"
    assert approval_state("ana@x", [(" Ana@X ", "s")], "s").state == "missing"
    stale = approval_state("ana@x", [("lee@x", "old"), ("kim@x", "older")], "s")
    assert (stale.state, stale.last_reviewer, stale.approved) == ("stale", "kim@x", False)
    ok = approval_state("ana@x", [("lee@x", "s"), ("kim@x", "old")], "s")
    assert ok.approved and ok.last_reviewer == "kim@x"


def test_one_approval():
    assert approval_of("ANA@x", "s", "ana@x", "s") == "by the owner"
    assert approval_of("lee@x", "s", "ana@x", "s") == "current"
    assert approval_of("lee@x", "s", "ana@x", "t") == "stale"
    assert approval_of("lee@x", "s", "ana@x", None) == "stale"
