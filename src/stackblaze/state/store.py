"""The SQLite store (WAL): projects, services, releases, env, replica status and events."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackblaze.state.secrets import SecretBox

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
  replica INTEGER, kind TEXT NOT NULL, message TEXT NOT NULL, details TEXT NOT NULL
);
"""


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
        """False for a failed build attempt, which is listed but can never run."""
        return self.details.get("status") != "build-failed"

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
    def __init__(self, path: Path, secrets: SecretBox) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-512")  # 512 KiB: the state is small, the daemon should be too
        self._db.executescript(SCHEMA)
        self._secrets = secrets

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

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

    def project(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT name, source, spec_file, created_at FROM projects WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        return {"name": row[0], "source": row[1], "spec_file": row[2], "created_at": row[3]}

    def save_project(self, name: str, source: str, spec_file: str | None) -> None:
        self._db.execute(
            "INSERT INTO projects (name, source, spec_file, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET source = excluded.source, spec_file = excluded.spec_file",
            (name, source, spec_file, time.time()),
        )

    def delete_project(self, name: str) -> None:
        with self.transaction():
            for table in ("services", "releases", "env", "replicas"):
                self._db.execute(f"DELETE FROM {table} WHERE project = ?", (name,))
            self._db.execute("DELETE FROM projects WHERE name = ?", (name,))

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
        return {(r[0], r[1]): json.loads(r[2]) for r in rows}

    def save_replica_status(self, project: str, service: str, replica: int, status: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replicas (project, service, replica, status) VALUES (?, ?, ?, ?)",
            (project, service, replica, json.dumps(status)),
        )

    def delete_replica_status(self, project: str, service: str, replica: int) -> None:
        self._db.execute(
            "DELETE FROM replicas WHERE project = ? AND service = ? AND replica = ?",
            (project, service, replica),
        )

    # -- events ------------------------------------------------------------------------------------

    def add_event(
        self, *, project: str, kind: str, message: str, service: str | None = None,
        replica: int | None = None, details: dict[str, Any] | None = None, at: float | None = None,
    ) -> Event:
        when = time.time() if at is None else at
        payload = details or {}
        cursor = self._db.execute(
            "INSERT INTO events (at, project, service, replica, kind, message, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (when, project, service, replica, kind, message, json.dumps(payload)),
        )
        return Event(int(cursor.lastrowid or 0), when, project, service, replica, kind, message, payload)

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
        args.append(limit)
        rows = self._db.execute(query, args).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in reversed(rows)]
