"""One entry for both kinds: prepare a backing service's disk and say how its server runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stackblaze.engine.backing import postgres, redis
from stackblaze.engine.backing.disk import User

PORTS = {"redis": redis.PORT, "postgres": postgres.PORT}


@dataclass(frozen=True)
class Prepared:
    start: str  # the server's command line (no password on it)
    version: str  # redis-server's version, or PostgreSQL's major
    shown: str  # what `ps` shows as its start: "redis-server 7.0.15 on 127.77.0.1:6379"


def version(kind: str) -> str:
    return redis.find()[1] if kind == "redis" else postgres.find()[1]


def prepare(kind: str, *, data_dir: Path, address: str, password: str, auth: str, user: User) -> Prepared:
    """Make the disk (and, for PostgreSQL, the cluster) once, write the config; raises PrepareFailed."""
    secret = password if auth == "password" else None
    if kind == "redis":
        start = redis.prepare(data_dir=data_dir, address=address, password=secret, user=user)
        found = redis.find()[1]
        return Prepared(start, found, f"redis-server {found} on {address}:{redis.PORT}")
    start = postgres.prepare(data_dir=data_dir, address=address, password=password, auth=auth, user=user)
    found = postgres.find()[1]
    return Prepared(start, found, f"postgres {found} on {address}:{postgres.PORT}")
