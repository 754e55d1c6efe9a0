"""content_sha and approve(): stable under layout, sensitive to content, never the owner's own."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from ab_pipelines.config import Approval, approve, content_sha, validate_registry
from ab_pipelines.settings import REPO_ROOT

AT = dt.datetime(2026, 10, 30, 10, 0, tzinfo=dt.UTC)

BLOCK = """\
id: exp
name: An experiment
owner: ana@example.com
status: draft
start_date: 2026-11-02
variants:
  - {id: control, weight: 0.5}
  - {id: treatment, weight: 0.5}
metrics:
  primary: [conversion]
"""

# The same content: other key order, block style, quotes, comments, other lifecycle fields.
REFORMATTED = """\
# reformatted by hand
variants:
  - id: control
    weight: 0.50
  - weight: .5
    id: "treatment"
metrics: {primary: [conversion]}
start_date: 2026-11-02
owner: 'ana@example.com'
name: "An experiment"
id: exp   # the id
status: running
shipped_variant: treatment
approvals: [{by: lee@example.com, at: 2026-10-30T10:00:00Z, sha: abc}]
"""


def test_sha_ignores_layout_and_lifecycle(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(BLOCK)
    b.write_text(REFORMATTED)
    assert content_sha(a) == content_sha(b) == content_sha(yaml.safe_load(BLOCK))


def test_sha_changes_with_a_weight(tmp_path):
    edited = BLOCK.replace("{id: control, weight: 0.5}", "{id: control, weight: 0.4}")
    assert content_sha(yaml.safe_load(edited)) != content_sha(yaml.safe_load(BLOCK))


def test_sha_is_canonical_json():
    import hashlib

    data = {"id": "x", "start_date": dt.date(2026, 11, 2), "name": "é", "status": "running"}
    canonical = '{"id":"x","name":"é","start_date":"2026-11-02"}'
    assert content_sha(data) == hashlib.sha256(canonical.encode()).hexdigest()


def test_approve_appends_and_keeps_the_text(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(BLOCK)
    approval = approve(path, "lee@example.com", AT)
    assert approval == Approval(by="lee@example.com", at=AT, sha=content_sha(path))
    text = path.read_text()
    assert (
        text
        == BLOCK
        + f"approvals:\n  - {{by: lee@example.com, at: 2026-10-30T10:00:00Z, sha: {approval.sha}}}\n"
    )
    second = approve(path, "kim@example.com", dt.datetime(2026, 10, 31, 9, 30))  # naive = UTC
    data = yaml.safe_load(path.read_text())
    assert [a["by"] for a in data["approvals"]] == ["lee@example.com", "kim@example.com"]
    assert second.at == dt.datetime(2026, 10, 31, 9, 30, tzinfo=dt.UTC)
    assert path.read_text().startswith(text)


def test_approve_inserts_into_a_list_followed_by_other_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        BLOCK.replace(
            "metrics:",
            "approvals:\n  - {by: kim@example.com, at: 2026-10-01T00:00:00Z, sha: abc}\nmetrics:",
        )
    )
    approve(path, "lee@example.com", AT)
    data = yaml.safe_load(path.read_text())
    assert [a["by"] for a in data["approvals"]] == ["kim@example.com", "lee@example.com"]
    assert data["metrics"] == {"primary": ["conversion"]}


def test_approve_falls_back_to_redumping_a_flow_list(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(BLOCK + "approvals: []\n")
    approval = approve(path, "lee@example.com", AT)
    data = yaml.safe_load(path.read_text())
    assert data["approvals"][-1]["sha"] == approval.sha
    assert list(data)[:3] == ["id", "name", "owner"]  # key order kept


@pytest.mark.parametrize("owner", ["ana@example.com", " ANA@example.com"])
def test_approve_refuses_the_owner(tmp_path, owner):
    path = tmp_path / "exp.yaml"
    path.write_text(BLOCK)
    with pytest.raises(ValueError, match="owns 'exp' and cannot approve it"):
        approve(path, owner, AT)
    assert path.read_text() == BLOCK


def test_demo_approvals_are_current(tmp_path):
    # Re-approving a copy of a demo experiment writes the sha its file already carries.
    for src in sorted((REPO_ROOT / "experiments").glob("*.yaml")):
        copy = Path(shutil.copy(src, tmp_path / src.name))
        assert (
            approve(copy, "zed@example.com", AT).sha
            == yaml.safe_load(src.read_text())["approvals"][0]["sha"]
        )
    assert validate_registry(REPO_ROOT) == []
