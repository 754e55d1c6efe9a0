"""Sticky stores: first write wins, in memory, in SQLite and across processes."""

from __future__ import annotations

import subprocess
import sys

from ab_pipelines.assignment import MemoryStickyStore, SqliteStickyStore, StickyStore


def test_memory_first_write_wins():
    s = MemoryStickyStore()
    assert isinstance(s, StickyStore)
    assert s.get("u1", "exp") is None
    s.set("u1", "exp", "control")
    s.set("u1", "exp", "treatment")
    s.set("u1", "other", "treatment")
    assert s.get("u1", "exp") == "control" and s.get("u1", "other") == "treatment"
    assert len(s) == 2


def test_sqlite_first_write_wins_and_persists(tmp_path):
    path = tmp_path / "sub" / "sticky.db"
    s = SqliteStickyStore(path)
    assert isinstance(s, StickyStore)
    s.set("u1", "exp", "control")
    s.set("u1", "exp", "treatment")
    s.set("ü-😀", "exp", "treatment")
    s.close()
    again = SqliteStickyStore(path)
    assert again.get("u1", "exp") == "control"
    assert again.get("ü-😀", "exp") == "treatment"
    assert again.get("u2", "exp") is None
    assert len(again) == 2


def test_sqlite_across_processes(tmp_path):
    path = tmp_path / "sticky.db"
    code = (
        "import sys\n"
        "from ab_pipelines.assignment import SqliteStickyStore\n"
        "s = SqliteStickyStore(sys.argv[1])\n"
        "for i in range(300):\n"
        "    s.set(f'u{i}', 'exp', sys.argv[2])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), v])
        for v in ("control", "treatment", "third")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    s = SqliteStickyStore(path)
    assert len(s) == 300
    values = {s.get(f"u{i}", "exp") for i in range(300)}
    assert values <= {"control", "treatment", "third"} and None not in values
    s.set("u0", "exp", "later")
    assert s.get("u0", "exp") != "later"
