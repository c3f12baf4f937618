"""Autoscaled workers in the SQLite store: each one's loop state (engine/autoscale/decide.py LoopState), the
replica numbers it runs, and the drains it is waiting on, so that a daemon killed at any time resumes the loop
without a jump and still reports a drain it started.

Shares the Store's connection; one AutoscaleStore per Store (`AutoscaleStore.of`), so the schema is made once.
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from dataclasses import dataclass, field
from typing import Any

from stackblaze.state.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS autoscale (
  project TEXT NOT NULL, service TEXT NOT NULL, state TEXT NOT NULL, indexes TEXT, drains TEXT NOT NULL,
  PRIMARY KEY (project, service)
);
"""


@dataclass(frozen=True)
class AutoscaleRow:
    project: str
    service: str
    state: dict[str, Any]  # LoopState.to_dict()
    indexes: tuple[int, ...] | None = None  # the replica numbers that run (None: 1..replicas)
    # Victims signalled and not yet gone: {"replica", "pid", "busy", "jobs", "since_event", "at"}
    drains: tuple[dict[str, Any], ...] = field(default_factory=tuple)


_ALL: weakref.WeakKeyDictionary[Store, AutoscaleStore] = weakref.WeakKeyDictionary()


class AutoscaleStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._db: sqlite3.Connection = store.connection
        self._db.executescript(SCHEMA)

    @classmethod
    def of(cls, store: Store) -> AutoscaleStore:
        found = _ALL.get(store)
        if found is None:
            found = _ALL[store] = cls(store)
        return found

    def row(self, project: str, service: str) -> AutoscaleRow | None:
        found = self._db.execute("SELECT state, indexes, drains FROM autoscale WHERE project = ? AND service = ?",
                                 (project, service)).fetchone()
        if found is None:
            return None
        indexes = json.loads(found[1]) if found[1] else None
        return AutoscaleRow(project, service, json.loads(found[0]),
                            None if indexes is None else tuple(int(n) for n in indexes),
                            tuple(json.loads(found[2])))

    def save(self, row: AutoscaleRow) -> None:
        """One statement; call it inside `Store.transaction()` with the service's count when both change."""
        self._db.execute(
            "INSERT OR REPLACE INTO autoscale (project, service, state, indexes, drains) VALUES (?, ?, ?, ?, ?)",
            (row.project, row.service, json.dumps(row.state),
             None if row.indexes is None else json.dumps(list(row.indexes)), json.dumps(list(row.drains))))

    def delete(self, project: str, service: str) -> None:
        self._db.execute("DELETE FROM autoscale WHERE project = ? AND service = ?", (project, service))

    def keys(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._db.execute("SELECT project, service FROM autoscale")]
