"""Replicas' resource samples in the SQLite store: bounded by age (24 h × time scale, so at most 8,640 per
replica at one every 10 s), kept across daemon restarts, read as one series per replica.

Shares the Store's connection (as state/drains.py does). One row per sample in a WITHOUT ROWID table whose
key is (project, service, replica, at): a series is one range scan, and a sample costs ~45 bytes. Exits,
restarts and starts are read from the events table for the same window, so a chart draws them on the same
time axis as the samples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from stackblaze.state.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
  project TEXT NOT NULL, service TEXT NOT NULL, replica INTEGER NOT NULL, at REAL NOT NULL,
  cpu REAL, memory INTEGER, PRIMARY KEY (project, service, replica, at)
) WITHOUT ROWID;
"""
MARK_KINDS = ("start", "exit", "restart-scheduled", "start-failed")
MAX_MARKS = 10_000  # a crash loop's marks in one window; the newest are kept


class UsageStore:
    def __init__(self, store: Store) -> None:
        self._db = store.connection
        self._db.executescript(SCHEMA)
        self._store = store

    def add_usage(self, samples: Sequence[Mapping[str, object]]) -> None:
        """Samples as engine.protocol's UsageSample says (state does not import the engine). Raises
        DiskFullError on a full disk (the sampler says so once and goes on)."""
        with self._store.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO usage (project, service, replica, at, cpu, memory) VALUES (?, ?, ?, ?, ?, ?)",
                [(s["project"], s["service"], s["replica"], s["at"], s["cpu"], s["memory"]) for s in samples])

    def prune_usage(self, before: float) -> int:
        return self._db.execute("DELETE FROM usage WHERE at < ?", (before,)).rowcount

    def series(self, project: str, service: str, *, since: float,
               replica: int | None = None) -> dict[int, dict[str, list[Any]]]:
        """Per replica, its samples at or after `since` as columns: {"at": [...], "cpu": [...], "memory": [...]}
        (what a chart library takes as it is)."""
        query = "SELECT replica, at, cpu, memory FROM usage WHERE project = ? AND service = ?"
        args: list[Any] = [project, service]
        if replica is not None:
            query += " AND replica = ?"
            args.append(replica)
        query += " AND at >= ? ORDER BY replica, at"
        args.append(since)
        found: dict[int, dict[str, list[Any]]] = {}
        for number, at, cpu, memory in self._db.execute(query, args):
            columns = found.setdefault(number, {"at": [], "cpu": [], "memory": []})
            columns["at"].append(at)
            columns["cpu"].append(cpu)
            columns["memory"].append(memory)
        return found

    def marks(self, project: str, service: str, *, since: float, replica: int | None = None) -> list[dict[str, Any]]:
        """The service's starts, exits and scheduled restarts at or after `since`, oldest first: when, which
        replica, what kind, the one-line message, and for an exit its code, signal and meaning."""
        query = ("SELECT at, replica, kind, message, details FROM events WHERE project = ? AND service = ? "
                 f"AND at >= ? AND kind IN ({', '.join('?' * len(MARK_KINDS))})")
        args: list[Any] = [project, service, since, *MARK_KINDS]
        if replica is not None:
            query += " AND replica = ?"
            args.append(replica)
        rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, MAX_MARKS)).fetchall()
        marks = []
        for at, number, kind, message, details in reversed(rows):
            mark: dict[str, Any] = {"at": at, "replica": number, "kind": kind, "message": message}
            if kind == "exit":
                info = json.loads(details)
                mark.update({key: info.get(key) for key in ("code", "signal", "meaning", "oom_killed")})
            elif kind == "restart-scheduled":
                mark["restart_at"] = json.loads(details).get("restart_at")
            marks.append(mark)
        return marks
