"""Sticky stores: a unit keeps the first variant it was given, whatever later weights say.

The client asks the store before hashing (CONTRACTS section 6, step 6) and records the hashed
variant after; the first write wins, so two processes that race agree on what the store holds.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["MemoryStickyStore", "SqliteStickyStore", "StickyStore"]


@runtime_checkable
class StickyStore(Protocol):
    """Where a unit's first variant per experiment is kept."""

    def get(self, unit: str, experiment_id: str) -> str | None: ...

    def set(self, unit: str, experiment_id: str, variant: str) -> None: ...


class MemoryStickyStore:
    """A dict in this process; first write wins.

    >>> s = MemoryStickyStore()
    >>> s.set("u1", "exp", "control"); s.set("u1", "exp", "treatment"); s.get("u1", "exp")
    'control'
    """

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], str] = {}

    def get(self, unit: str, experiment_id: str) -> str | None:
        return self._data.get((unit, experiment_id))

    def set(self, unit: str, experiment_id: str, variant: str) -> None:
        self._data.setdefault((unit, experiment_id), variant)

    def __len__(self) -> int:
        return len(self._data)


class SqliteStickyStore:
    """One SQLite table keyed by (unit, experiment_id); shared safely by threads and processes.

    ``INSERT OR IGNORE`` makes the first write win even when two processes race.
    """

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self.path), timeout=timeout, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sticky_assignments ("
            " unit TEXT NOT NULL, experiment_id TEXT NOT NULL, variant TEXT NOT NULL,"
            " PRIMARY KEY (unit, experiment_id))"
        )

    def get(self, unit: str, experiment_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT variant FROM sticky_assignments WHERE unit = ? AND experiment_id = ?",
                (unit, experiment_id),
            ).fetchone()
        return row[0] if row else None

    def set(self, unit: str, experiment_id: str, variant: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sticky_assignments (unit, experiment_id, variant)"
                " VALUES (?, ?, ?)",
                (unit, experiment_id, variant),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM sticky_assignments").fetchone()[0]
