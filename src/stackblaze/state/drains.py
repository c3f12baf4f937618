"""Log drains in the SQLite store: their URLs (encrypted: they carry credentials), cursors and counters.

Shares the Store's connection. Cursors are saved after each acknowledged batch, with the counters, in one
transaction; the drain manager reaches these methods through its CursorStore protocol. On a full disk
they never raise: progress waits in memory and is saved with the next batch that can be (a daemon that
restarts before then sends those lines again: at least once, as always).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackblaze.errors import DiskFullError
from stackblaze.state.store import Store

log = logging.getLogger("stackblaze.state")

SCHEMA = """
CREATE TABLE IF NOT EXISTS drains (
  id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, service TEXT, url BLOB NOT NULL,
  created_at REAL NOT NULL, sent INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0,
  dropped INTEGER NOT NULL DEFAULT 0, last_error TEXT, failing_since REAL, last_sent_at REAL
);
CREATE TABLE IF NOT EXISTS drain_cursors (
  drain_id INTEGER NOT NULL, service TEXT NOT NULL, replica INTEGER NOT NULL, inode INTEGER NOT NULL,
  offset INTEGER NOT NULL, PRIMARY KEY (drain_id, service, replica)
);
"""
COLUMNS = "id, project, service, url, created_at, sent, retried, dropped, last_error, failing_since, last_sent_at"


@dataclass(frozen=True)
class DrainRow:
    id: int
    project: str
    service: str | None
    url: str  # decrypted, with credentials: mask it before it goes anywhere
    created_at: float
    sent: int
    retried: int
    dropped: int
    last_error: str | None
    failing_since: float | None
    last_sent_at: float | None

    def counters(self) -> dict[str, Any]:
        return {"sent": self.sent, "retried": self.retried, "dropped": self.dropped}


class DrainStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.connection
        self._db.executescript(SCHEMA)
        # drain id -> (positions, sent, retried, dropped) not saved yet for want of room
        self._unsaved: dict[int, tuple[dict[tuple[str, int], tuple[int, int]], int, int, int]] = {}

    def add(self, *, project: str, service: str | None, url: str) -> DrainRow:
        cursor = self._db.execute(
            "INSERT INTO drains (project, service, url, created_at) VALUES (?, ?, ?, ?)",
            (project, service, self._store.secrets.encrypt(url), time.time()),
        )
        row = self.get(int(cursor.lastrowid or 0))
        assert row is not None
        return row

    def get(self, drain_id: int) -> DrainRow | None:
        found = self._db.execute(f"SELECT {COLUMNS} FROM drains WHERE id = ?", (drain_id,)).fetchone()
        return None if found is None else self._row(found)

    def all(self, project: str | None = None) -> list[DrainRow]:
        if project is None:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM drains ORDER BY id").fetchall()
        else:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM drains WHERE project = ? ORDER BY id",
                                    (project,)).fetchall()
        return [self._row(r) for r in rows]

    def projects(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT DISTINCT project FROM drains")}

    def delete(self, drain_id: int) -> bool:
        self._unsaved.pop(drain_id, None)
        with self._store.transaction():
            self._db.execute("DELETE FROM drain_cursors WHERE drain_id = ?", (drain_id,))
            return self._db.execute("DELETE FROM drains WHERE id = ?", (drain_id,)).rowcount > 0

    def _row(self, r: tuple[Any, ...]) -> DrainRow:
        return DrainRow(r[0], r[1], r[2], self._store.secrets.decrypt(r[3]), r[4], r[5], r[6], r[7], r[8], r[9],
                        r[10])

    # -- the drain manager's CursorStore -------------------------------------------------------------

    def load_positions(self, drain_id: int) -> dict[tuple[str, int], tuple[int, int]]:
        rows = self._db.execute(
            "SELECT service, replica, inode, offset FROM drain_cursors WHERE drain_id = ?", (drain_id,)
        ).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def save_progress(self, drain_id: int, *, positions: Mapping[tuple[str, int], tuple[int, int]], sent: int,
                      retried: int, dropped: int) -> None:
        waiting, before_sent, before_retried, before_dropped = self._unsaved.pop(drain_id, ({}, 0, 0, 0))
        positions = {**waiting, **positions}
        sent, retried, dropped = sent + before_sent, retried + before_retried, dropped + before_dropped
        try:
            self._write_progress(drain_id, positions, sent, retried, dropped)
        except DiskFullError as exc:
            if not waiting and not before_sent:
                log.warning("%s: drain %d's progress is kept in memory until it can be saved", exc, drain_id)
            self._unsaved[drain_id] = (positions, sent, retried, dropped)

    def _write_progress(self, drain_id: int, positions: Mapping[tuple[str, int], tuple[int, int]], sent: int,
                        retried: int, dropped: int) -> None:
        with self._store.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO drain_cursors (drain_id, service, replica, inode, offset) "
                "VALUES (?, ?, ?, ?, ?)",
                [(drain_id, service, replica, inode, offset) for (service, replica), (inode, offset)
                 in positions.items()],
            )
            self._db.execute(
                "UPDATE drains SET sent = sent + ?, retried = retried + ?, dropped = dropped + ?, "
                "last_sent_at = CASE WHEN ? > 0 THEN ? ELSE last_sent_at END WHERE id = ?",
                (sent, retried, dropped, sent, time.time(), drain_id),
            )

    def save_health(self, drain_id: int, *, error: str | None) -> None:
        try:
            self._write_health(drain_id, error)
        except DiskFullError:
            pass  # the manager keeps its drains' health in memory; the next change saves it

    def _write_health(self, drain_id: int, error: str | None) -> None:
        if error is None:
            self._db.execute("UPDATE drains SET last_error = NULL, failing_since = NULL WHERE id = ?", (drain_id,))
        else:
            self._db.execute(
                "UPDATE drains SET last_error = ?, failing_since = COALESCE(failing_since, ?) WHERE id = ?",
                (error, time.time(), drain_id),
            )
