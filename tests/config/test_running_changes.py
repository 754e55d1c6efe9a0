"""Changes that would move users of a running experiment, deleting drafts, odd files."""

from __future__ import annotations

import threading

import pytest

from ab_pipelines.assignment.hashing import bucket
from ab_pipelines.config import validate_registry
from ab_pipelines.config.publish import current_payload, kill, publish, published_state
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_KILLS


@pytest.fixture
def root(registry_copy):
    return registry_copy


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_changing_salt_weights_or_lowering_allocation_of_a_running_experiment_is_refused(
    home, root
):
    publish(home, root)
    state = published_state(home)
    path = root / "experiments" / "recs_ranking.yaml"
    _edit(path, "allocation: 0.6", "allocation: 0.4")
    _edit(path, "{id: control, weight: 0.5}", "{id: control, weight: 0.4}")
    _edit(path, "{id: treatment, weight: 0.5}", "{id: treatment, weight: 0.6}")
    fields = {(p.field) for p in validate_registry(root, state) if "recs_ranking" in p.file}
    assert {"allocation", "variants"} <= fields


def test_raising_the_allocation_is_allowed(home, root):
    publish(home, root)
    _edit(root / "experiments" / "recs_ranking.yaml", "allocation: 0.6", "allocation: 0.8")
    problems = [
        p for p in validate_registry(root, published_state(home)) if p.field == "allocation"
    ]
    assert problems == []


def test_a_published_draft_may_be_deleted(home, root):
    publish(home, root)
    state = published_state(home)
    state["experiments"]["old_idea"] = {"status": "draft", "layer": None, "layer_range": None}
    assert validate_registry(root, state) == []
    state["experiments"]["old_idea"]["status"] = "running"
    assert any("removed" in p.reason for p in validate_registry(root, state))


def test_a_file_that_is_not_utf8_is_a_problem_not_a_crash(root):
    (root / "experiments" / "latin1.yaml").write_bytes(
        "id: latin1\nname: caf\xe9\n".encode("latin-1")
    )
    problems = validate_registry(root, None)
    assert any(p.file.endswith("latin1.yaml") and "UTF-8" in p.reason for p in problems)


def test_a_lone_surrogate_hashes_instead_of_raising():
    assert 0 <= bucket("salt", "\ud800") < 10000


def test_a_second_kill_keeps_the_first_record(home, root):
    publish(home, root)
    kill(home, "homepage_aa", "first", "a@example.com", registry_root=root)
    kill(home, "homepage_aa", "second", "b@example.com", registry_root=root)
    (row,) = Lake(home).read_arrow(OPS_KILLS).to_pylist()
    assert (row["by"], row["reason"]) == ("a@example.com", "first")


def test_a_kill_racing_a_publish_is_never_lost(home, root):
    publish(home, root)
    errors = []

    def run(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lambda: publish(home, root),)) for _ in range(4)]
    threads.append(
        threading.Thread(
            target=run,
            args=(lambda: kill(home, "search_speed", "x", "a@example.com", registry_root=root),),
        )
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_payload(home)["experiments"]["search_speed"]["status"] == "killed"
    versions = sorted(p.name for p in (home.edge / "versions").iterdir())
    assert versions == ["config-v1.json", "config-v2.json"]
