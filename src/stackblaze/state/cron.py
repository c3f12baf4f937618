"""Cron services in the SQLite store: their runs (the last `history` per service), which are suspended, and
the last tick each considered (what a daemon that was down compares the schedule with).

Shares the Store's connection; one CronStore per Store (`CronStore.of`), so the schema is made once.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any

from stackblaze.state.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS cron_runs (
  project TEXT NOT NULL, service TEXT NOT NULL, number INTEGER NOT NULL, trigger TEXT NOT NULL,
  attempt INTEGER NOT NULL, started REAL NOT NULL, log_path TEXT NOT NULL, key TEXT NOT NULL, release INTEGER,
  ended REAL, exit_code INTEGER, exit_signal TEXT, reason TEXT, PRIMARY KEY (project, service, number)
);
CREATE TABLE IF NOT EXISTS cron_services (
  project TEXT NOT NULL, service TEXT NOT NULL, suspended INTEGER NOT NULL DEFAULT 0, last_tick REAL,
  last_number INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (project, service)
);
CREATE TABLE IF NOT EXISTS cron_clock (id INTEGER PRIMARY KEY CHECK (id = 1), origin REAL NOT NULL);
"""
COLUMNS = ("project, service, number, trigger, attempt, started, log_path, key, release, ended, exit_code, "
           "exit_signal, reason")
@dataclass(frozen=True)
class RunRow:
    """One run of a cron service (engine/cron.py's RunRow protocol says each field)."""

    project: str
    service: str
    number: int
    trigger: str
    attempt: int
    started: float
    log_path: str
    key: str
    release: int | None = None
    ended: float | None = None
    exit_code: int | None = None
    exit_signal: str | None = None
    reason: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else round(self.ended - self.started, 3)

    @property
    def ok(self) -> bool:
        return self.ended is not None and self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.number, "service": self.service, "trigger": self.trigger, "attempt": self.attempt,
                "started": self.started, "ended": self.ended, "exit_code": self.exit_code,
                "exit_signal": self.exit_signal, "duration": self.duration, "reason": self.reason,
                "release": self.release, "log_path": self.log_path,
                "state": "running" if self.ended is None else ("succeeded" if self.ok else "failed")}


_ALL: weakref.WeakKeyDictionary[Store, CronStore] = weakref.WeakKeyDictionary()


class CronStore:
    """The RunStore of engine/cron.py, in the daemon's database."""

    def __init__(self, store: Store) -> None:
        self._db: sqlite3.Connection = store.connection
        self._db.executescript(SCHEMA)

    @classmethod
    def of(cls, store: Store) -> CronStore:
        found = _ALL.get(store)
        if found is None:
            found = _ALL[store] = cls(store)
        return found

    def clock_origin(self) -> float:
        row = self._db.execute("SELECT origin FROM cron_clock WHERE id = 1").fetchone()
        if row is not None:
            return float(row[0])
        now = time.time()
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO cron_clock (id, origin) VALUES (1, ?)", (now,))
        return now

    def _service(self, project: str, service: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT suspended, last_tick, last_number FROM cron_services WHERE project = ? AND service = ?",
            (project, service)).fetchone()
        return row

    def _ensure(self, project: str, service: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO cron_services (project, service) VALUES (?, ?)", (project, service))

    def suspended(self, project: str, service: str) -> bool:
        row = self._service(project, service)
        return bool(row and row[0])

    def suspend(self, project: str, service: str, value: bool) -> None:
        with self._db:
            self._ensure(project, service)
            self._db.execute("UPDATE cron_services SET suspended = ? WHERE project = ? AND service = ?",
                             (int(value), project, service))

    def last_tick(self, project: str, service: str) -> float | None:
        row = self._service(project, service)
        return None if row is None or row[1] is None else float(row[1])

    def set_last_tick(self, project: str, service: str, tick: float) -> None:
        with self._db:
            self._ensure(project, service)
            self._db.execute("UPDATE cron_services SET last_tick = ? WHERE project = ? AND service = ?",
                             (tick, project, service))

    def add_run(self, project: str, service: str, *, trigger: str, attempt: int, started: float, key: str,
                release: int | None, log_dir: str) -> RunRow:
        with self._db:
            self._ensure(project, service)
            # Numbers never repeat for a service, even once its old runs are pruned: a log file is one run's.
            self._db.execute("UPDATE cron_services SET last_number = last_number + 1 WHERE project = ? AND "
                             "service = ?", (project, service))
            number = int(self._db.execute("SELECT last_number FROM cron_services WHERE project = ? AND service = ?",
                                          (project, service)).fetchone()[0])
            row = RunRow(project, service, number, trigger, attempt, started, f"{log_dir}/{number}.log", key, release)
            self._db.execute(f"INSERT OR REPLACE INTO cron_runs ({COLUMNS}) VALUES ({', '.join('?' * 13)})",
                             (project, service, number, trigger, attempt, started, row.log_path, key, release,
                              None, None, None, None))
        return row

    def finish_run(self, project: str, service: str, number: int, *, ended: float, exit_code: int | None,
                   exit_signal: str | None, reason: str | None) -> RunRow | None:
        with self._db:
            self._db.execute("UPDATE cron_runs SET ended = ?, exit_code = ?, exit_signal = ?, reason = ? "
                             "WHERE project = ? AND service = ? AND number = ?",
                             (ended, exit_code, exit_signal, reason, project, service, number))
        return self.run(project, service, number)

    def runs(self, project: str, service: str, *, limit: int = 100) -> list[RunRow]:
        rows = self._db.execute(f"SELECT {COLUMNS} FROM cron_runs WHERE project = ? AND service = ? "
                                "ORDER BY number DESC LIMIT ?", (project, service, limit)).fetchall()
        return [RunRow(*row) for row in rows]

    def run(self, project: str, service: str, number: int) -> RunRow | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM cron_runs WHERE project = ? AND service = ? AND number = ?",
                               (project, service, number)).fetchone()
        return None if row is None else RunRow(*row)

    def prune_runs(self, project: str, service: str, *, keep: int) -> list[RunRow]:
        finished = [r for r in self.runs(project, service, limit=1 << 30) if r.ended is not None]
        dropped = finished[keep:]
        with self._db:
            self._db.executemany("DELETE FROM cron_runs WHERE project = ? AND service = ? AND number = ?",
                                 [(project, service, r.number) for r in dropped])
        return dropped

    def forget(self, project: str, service: str | None = None) -> None:
        where, args = ("project = ?", (project,)) if service is None else \
            ("project = ? AND service = ?", (project, service))
        with self._db:
            self._db.execute(f"DELETE FROM cron_runs WHERE {where}", args)
            self._db.execute(f"DELETE FROM cron_services WHERE {where}", args)


class MemoryRunStore:
    """CronStore in memory, for unit tests (the same behaviour, no database)."""

    def __init__(self) -> None:
        self._origin = time.time()
        self._suspended: set[tuple[str, str]] = set()
        self._ticks: dict[tuple[str, str], float] = {}
        self._runs: dict[tuple[str, str], list[RunRow]] = {}
        self._numbers: dict[tuple[str, str], int] = {}

    def clock_origin(self) -> float:
        return self._origin

    def suspend(self, project: str, service: str, value: bool) -> None:
        (self._suspended.add if value else self._suspended.discard)((project, service))

    def suspended(self, project: str, service: str) -> bool:
        return (project, service) in self._suspended

    def last_tick(self, project: str, service: str) -> float | None:
        return self._ticks.get((project, service))

    def set_last_tick(self, project: str, service: str, tick: float) -> None:
        self._ticks[(project, service)] = tick

    def add_run(self, project: str, service: str, *, trigger: str, attempt: int, started: float, key: str,
                release: int | None, log_dir: str) -> RunRow:
        number = self._numbers.get((project, service), 0) + 1
        self._numbers[(project, service)] = number
        row = RunRow(project, service, number, trigger, attempt, started, f"{log_dir}/{number}.log", key, release)
        self._runs.setdefault((project, service), []).append(row)
        return row

    def finish_run(self, project: str, service: str, number: int, *, ended: float, exit_code: int | None,
                   exit_signal: str | None, reason: str | None) -> RunRow | None:
        rows = self._runs.get((project, service), [])
        for index, row in enumerate(rows):
            if row.number == number:
                rows[index] = replace(row, ended=ended, exit_code=exit_code, exit_signal=exit_signal, reason=reason)
                return rows[index]
        return None

    def runs(self, project: str, service: str, *, limit: int = 100) -> list[RunRow]:
        return sorted(self._runs.get((project, service), []), key=lambda r: -r.number)[:limit]

    def run(self, project: str, service: str, number: int) -> RunRow | None:
        return next((r for r in self._runs.get((project, service), []) if r.number == number), None)

    def prune_runs(self, project: str, service: str, *, keep: int) -> list[RunRow]:
        dropped = [r for r in self.runs(project, service, limit=1 << 30) if r.ended is not None][keep:]
        self._runs[(project, service)] = [r for r in self._runs.get((project, service), []) if r not in dropped]
        return dropped

    def forget(self, project: str, service: str | None = None) -> None:
        for key in [k for k in self._runs if k[0] == project and (service is None or k[1] == service)]:
            del self._runs[key]
        self._suspended = {k for k in self._suspended if not (k[0] == project and service in (None, k[1]))}
