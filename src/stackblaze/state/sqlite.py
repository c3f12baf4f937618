"""The store's SQLite connection: a full disk as a DiskFullError naming the database, and the files kept
private (0600)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from stackblaze.errors import DiskFullError


class Connection(sqlite3.Connection):
    """Every statement's "database or disk is full" becomes a DiskFullError naming the database."""

    db_path = ""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _translated(exc, self.db_path) from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _translated(exc, self.db_path) from exc

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.OperationalError as exc:
            raise _translated(exc, self.db_path) from exc


def _translated(exc: sqlite3.OperationalError, path: str) -> Exception:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and no_space(os.path.dirname(path))):
        return DiskFullError.at(path)
    return exc


def no_space(directory: object) -> bool:
    """Whether the filesystem of `directory` has (almost) no free blocks left: what turns an I/O error
    into a full disk (growing -shm says "disk I/O error"; shutil.copytree's error carries no errno)."""
    try:
        found = os.statvfs(str(directory) or ".")
    except OSError:
        return False
    return found.f_bavail * found.f_frsize < (64 << 10)


def create_private(path: Path) -> None:
    """The database and its -wal and -shm are the daemon's alone (SQLite gives the latter two the
    database's own mode, so creating it 0600 is enough for new ones)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if each.stat().st_mode & 0o077:
                each.chmod(0o600)
