"""The SQLite store (WAL): projects, services, releases, env, replica status and events.

A full disk is a DiskFullError (one line, naming the database), never a raw sqlite3 error; reads keep
working, and writes work again as soon as there is space. Events are capped (state/events.py) and pruned
per project by count, age and bytes, so no crash loop grows the file without bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackblaze.errors import DiskFullError
from stackblaze.settings import EventLimits
from stackblaze.state.events import cap_details, cap_message
from stackblaze.state.secrets import SecretBox
from stackblaze.state.sqlite import Connection, create_private

log = logging.getLogger("stackblaze.state")
PRUNE_EVERY = 100  # inserts per project between two prunes: each costs one index scan of that project
SHRINK_ABOVE = 8 << 20  # free pages kept in the file before they are given back to the filesystem
MAX_EVENTS_READ = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
  name TEXT PRIMARY KEY, source TEXT NOT NULL, spec_file TEXT, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
  project TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, replicas INTEGER NOT NULL,
  release INTEGER NOT NULL, running INTEGER NOT NULL DEFAULT 1, generation INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS releases (
  project TEXT NOT NULL, service TEXT NOT NULL, number INTEGER NOT NULL, path TEXT NOT NULL,
  digest TEXT NOT NULL, created_at REAL NOT NULL, details TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (project, service, number)
);
CREATE TABLE IF NOT EXISTS env (
  project TEXT NOT NULL, service TEXT NOT NULL DEFAULT '', key TEXT NOT NULL, value BLOB NOT NULL,
  secret INTEGER NOT NULL, PRIMARY KEY (project, service, key)
);
CREATE TABLE IF NOT EXISTS replicas (
  project TEXT NOT NULL, service TEXT NOT NULL, replica INTEGER NOT NULL, status TEXT NOT NULL,
  PRIMARY KEY (project, service, replica)
);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, project TEXT NOT NULL, service TEXT,
  replica INTEGER, kind TEXT NOT NULL, message TEXT NOT NULL, details TEXT NOT NULL,
  size INTEGER NOT NULL DEFAULT 0
);
"""
# Covering: pruning by count, age and bytes reads this index alone, never the (large) rows.
EVENTS_INDEX = "CREATE INDEX IF NOT EXISTS events_by_project ON events (project, id, at, size)"


@dataclass(frozen=True)
class ServiceRow:
    project: str
    name: str
    spec: dict[str, Any]
    replicas: int
    release: int
    running: bool
    generation: int


@dataclass(frozen=True)
class ReleaseRow:
    project: str
    service: str
    number: int
    path: str  # the build tree the service runs in
    digest: str  # what makes it this release: build id and start command
    created_at: float
    details: dict[str, Any]  # the plan, cache key, whether it installed, build log path; a failed attempt's error

    @property
    def built(self) -> bool:
        """False for a failed attempt (its build, or its release command), which is listed but never runs."""
        return self.details.get("status") not in ("build-failed", "release-failed")

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "service": self.service, "number": self.number, "path": self.path,
                "created_at": self.created_at, **self.details}


@dataclass(frozen=True)
class EnvVar:
    key: str
    value: str
    secret: bool
    service: str  # '' for project-wide


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    project: str
    service: str | None
    replica: int | None
    kind: str
    message: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": self.at, "project": self.project, "service": self.service,
            "replica": self.replica, "kind": self.kind, "message": self.message, "details": self.details,
        }


class Store:
    def __init__(self, path: Path, secrets: SecretBox, *, limits: EventLimits | None = None) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_private(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=Connection)
        assert isinstance(db, Connection)
        db.db_path = str(path)
        self._db: Connection = db
        self._limits = limits or EventLimits()
        self._inserts: dict[str, int] = {}  # events added per project since the last prune
        # Replica statuses a full disk kept from being saved: written with the next status that can be.
        self._unsaved: dict[tuple[str, str, int], dict[str, Any] | None] = {}
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file at once
            if self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                with contextlib.suppress(DiskFullError):  # an older file: converted once, when there is room
                    self._db.execute("VACUUM")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-512")  # 512 KiB: the state is small, the daemon should be too
        self._db.execute(f"PRAGMA journal_size_limit={16 << 20}")  # after a big delete, the WAL shrinks back
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        if "size" not in columns:  # an events table from before sizes were kept
            self._db.execute("ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
            self._db.execute("UPDATE events SET size = length(message) + length(details)")
        self._db.execute(EVENTS_INDEX)
        self._secrets = secrets

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) may already have rolled back: never hide the error behind
            # "no transaction is active", never leave the connection inside one.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with contextlib.suppress(DiskFullError):
            self._flush_statuses()
        self._db.close()

    @property
    def path(self) -> str:
        return self._db.db_path

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for tables kept by sibling modules (state/drains.py)."""
        return self._db

    @property
    def secrets(self) -> SecretBox:
        return self._secrets

    # -- projects and services -------------------------------------------------------------------

    def project_names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM projects ORDER BY name")]

    def save_project(self, name: str, source: str, spec_file: str | None) -> None:
        self._db.execute(
            "INSERT INTO projects (name, source, spec_file, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET source = excluded.source, spec_file = excluded.spec_file",
            (name, source, spec_file, time.time()),
        )

    def delete_project(self, name: str) -> None:
        """Everything of the project, its events included (the caller may record one `destroy` event)."""
        with self.transaction():
            for table in ("services", "releases", "env", "replicas", "events"):
                self._db.execute(f"DELETE FROM {table} WHERE project = ?", (name,))
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage'").fetchone():  # state/usage.py
                self._db.execute("DELETE FROM usage WHERE project = ?", (name,))
            self._db.execute("DELETE FROM projects WHERE name = ?", (name,))
        self._unsaved = {key: value for key, value in self._unsaved.items() if key[0] != name}
        self._inserts.pop(name, None)
        self.shrink(keep=0)

    def services(self, project: str | None = None) -> list[ServiceRow]:
        query = "SELECT project, name, spec, replicas, release, running, generation FROM services"
        args: tuple[str, ...] = ()
        if project is not None:
            query += " WHERE project = ?"
            args = (project,)
        rows = self._db.execute(query + " ORDER BY project, name", args).fetchall()
        return [ServiceRow(r[0], r[1], json.loads(r[2]), r[3], r[4], bool(r[5]), r[6]) for r in rows]

    def service(self, project: str, name: str) -> ServiceRow | None:
        return next((s for s in self.services(project) if s.name == name), None)

    def save_service(self, row: ServiceRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO services (project, name, spec, replicas, release, running, generation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.project, row.name, json.dumps(row.spec), row.replicas, row.release, int(row.running),
             row.generation),
        )

    def delete_service(self, project: str, name: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM services WHERE project = ? AND name = ?", (project, name))
            self._db.execute("DELETE FROM replicas WHERE project = ? AND service = ?", (project, name))

    # -- releases ----------------------------------------------------------------------------------

    def _release_rows(self, where: str, args: tuple[Any, ...]) -> list[ReleaseRow]:
        rows = self._db.execute(
            "SELECT project, service, number, path, digest, created_at, details FROM releases WHERE "
            + where + " ORDER BY number", args,
        ).fetchall()
        return [ReleaseRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def releases(self, project: str, service: str) -> list[ReleaseRow]:
        return self._release_rows("project = ? AND service = ?", (project, service))

    def latest_release(self, project: str, service: str, *, built: bool = False) -> ReleaseRow | None:
        """The newest release, or with `built` the newest one that built (not a failed attempt)."""
        rows = [r for r in self.releases(project, service) if not built or r.built]
        return rows[-1] if rows else None

    def update_release(self, project: str, service: str, number: int, changes: dict[str, Any]) -> None:
        """Merge `changes` into a release's details (e.g. how its rollout ended)."""
        release = self.release(project, service, number)
        if release is not None:
            self._db.execute("UPDATE releases SET details = ? WHERE project = ? AND service = ? AND number = ?",
                             (json.dumps({**release.details, **changes}), project, service, number))

    def release(self, project: str, service: str, number: int) -> ReleaseRow | None:
        rows = self._release_rows("project = ? AND service = ? AND number = ?", (project, service, number))
        return rows[0] if rows else None

    def add_release(self, row: ReleaseRow) -> None:
        self._db.execute(
            "INSERT INTO releases (project, service, number, path, digest, created_at, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.project, row.service, row.number, row.path, row.digest, row.created_at, json.dumps(row.details)),
        )

    def delete_release(self, project: str, service: str, number: int) -> None:
        self._db.execute("DELETE FROM releases WHERE project = ? AND service = ? AND number = ?",
                         (project, service, number))

    def all_releases(self) -> list[ReleaseRow]:
        """Every kept release of every project: what garbage collection of builds and caches must keep."""
        return self._release_rows("1 = 1", ())

    # -- env ---------------------------------------------------------------------------------------

    def env(self, project: str) -> list[EnvVar]:
        rows = self._db.execute(
            "SELECT service, key, value, secret FROM env WHERE project = ? ORDER BY service, key", (project,)
        ).fetchall()
        result = []
        for service, key, value, secret in rows:
            plain = self._secrets.decrypt(value) if secret else value.decode()
            result.append(EnvVar(key=key, value=plain, secret=bool(secret), service=service))
        return result

    def set_env(self, project: str, service: str, key: str, value: str, *, secret: bool) -> None:
        stored = self._secrets.encrypt(value) if secret else value.encode()
        self._db.execute(
            "INSERT OR REPLACE INTO env (project, service, key, value, secret) VALUES (?, ?, ?, ?, ?)",
            (project, service, key, stored, int(secret)),
        )

    def unset_env(self, project: str, service: str, key: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM env WHERE project = ? AND service = ? AND key = ?", (project, service, key)
        )
        return cursor.rowcount > 0

    # -- replica status ----------------------------------------------------------------------------

    def replica_statuses(self, project: str) -> dict[tuple[str, int], dict[str, Any]]:
        rows = self._db.execute(
            "SELECT service, replica, status FROM replicas WHERE project = ?", (project,)
        ).fetchall()
        found = {(r[0], r[1]): json.loads(r[2]) for r in rows}
        for (owner, service, replica), status in self._unsaved.items():
            if owner == project:
                if status is None:
                    found.pop((service, replica), None)
                else:
                    found[(service, replica)] = status
        return found

    def save_replica_status(self, project: str, service: str, replica: int, status: dict[str, Any]) -> None:
        """Never raises for a full disk: the supervisor's memory is the truth while the daemon runs, and
        what could not be saved is saved with the next status that can be (see unsaved_statuses)."""
        self._unsaved[(project, service, replica)] = status
        self._flush_statuses_quietly()

    def delete_replica_status(self, project: str, service: str, replica: int) -> None:
        self._unsaved[(project, service, replica)] = None
        self._flush_statuses_quietly()

    @property
    def unsaved_statuses(self) -> int:
        return len(self._unsaved)

    def _flush_statuses_quietly(self) -> None:
        waiting = len(self._unsaved) > 1
        try:
            self._flush_statuses()
        except DiskFullError as exc:
            if not waiting:  # said once per full-disk episode, not once per status
                log.warning("%s: replica statuses are kept in memory until they can be saved", exc)

    def _flush_statuses(self) -> None:
        if not self._unsaved:
            return
        with self.transaction():
            for (project, service, replica), status in self._unsaved.items():
                if status is None:
                    self._db.execute("DELETE FROM replicas WHERE project = ? AND service = ? AND replica = ?",
                                     (project, service, replica))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO replicas (project, service, replica, status) VALUES (?, ?, ?, ?)",
                        (project, service, replica, json.dumps(status)),
                    )
        self._unsaved.clear()

    # -- events ------------------------------------------------------------------------------------

    def add_event(
        self, *, project: str, kind: str, message: str, service: str | None = None,
        replica: int | None = None, details: dict[str, Any] | None = None, at: float | None = None,
    ) -> Event:
        """Raises DiskFullError on a full disk (the caller decides whether that matters)."""
        when = time.time() if at is None else at
        message = cap_message(message)
        payload, text = cap_details(details or {}, self._limits)
        cursor = self._db.execute(
            "INSERT INTO events (at, project, service, replica, kind, message, details, size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (when, project, service, replica, kind, message, text, len(message.encode()) + len(text)),
        )
        count = self._inserts[project] = self._inserts.get(project, 0) + 1
        if count % PRUNE_EVERY == 1:  # the first event after a start too: what aged while it was down
            with contextlib.suppress(DiskFullError):  # the event is stored; pruning waits for room
                self.prune_events(project)
        return Event(int(cursor.lastrowid or 0), when, project, service, replica, kind, message, payload)

    def prune_events(self, project: str, *, now: float | None = None) -> int:
        """Drop the project's events beyond the limits (count, age, bytes: the oldest first); how many went."""
        limits = self._limits
        cutoff = (time.time() if now is None else now) - limits.max_age
        by_count = self._db.execute(
            "SELECT id FROM events WHERE project = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (project, limits.max_count),
        ).fetchone()
        by_bytes = self._db.execute(
            "SELECT id FROM (SELECT id, sum(size) OVER (ORDER BY id DESC) AS total FROM events "
            "WHERE project = ?) WHERE total > ? ORDER BY id DESC LIMIT 1", (project, limits.max_bytes),
        ).fetchone()
        last = max((row[0] for row in (by_count, by_bytes) if row is not None), default=0)
        dropped = self._db.execute("DELETE FROM events WHERE project = ? AND (id <= ? OR at < ?)",
                                   (project, last, cutoff)).rowcount
        if dropped:
            self.shrink(keep=SHRINK_ABOVE)
        return dropped

    def shrink(self, *, keep: int) -> None:
        """Give free pages beyond `keep` bytes back to the filesystem (pages a crash loop frees are reused
        by the next events; a destroyed project's are not)."""
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        if free * page_size > keep:
            with contextlib.suppress(DiskFullError):  # moving pages needs a little room; next time then
                # executescript steps the pragma to its end; execute() would free a single page
                self._db.executescript(f"PRAGMA incremental_vacuum({free - keep // page_size});")

    def events(
        self, *, project: str | None = None, service: str | None = None, after_id: int = 0,
        limit: int = 100,
    ) -> list[Event]:
        query = "SELECT id, at, project, service, replica, kind, message, details FROM events WHERE id > ?"
        args: list[Any] = [after_id]
        if project is not None:
            query += " AND project = ?"
            args.append(project)
        if service is not None:  # and what touched the whole project: deploys, project env, drains
            query += " AND (service = ? OR service IS NULL)"
            args.append(service)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, min(limit, MAX_EVENTS_READ)))
        rows = self._db.execute(query, args).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in reversed(rows)]
