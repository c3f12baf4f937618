"""A project's Redis: the distribution's redis-server, its config in its own data dir.

The config file, not argv, carries everything: `requirepass` must never show in `ps`. Persistence is the
append-only file (fsync every second); RDB save points are off, so that a SIGTERM never waits on, or is
refused for, a snapshot.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from stackblaze.engine.backing.disk import PrepareFailed, User, make_dir, write_private

BINARY = "redis-server"
PORT = 6379
CONFIG = "redis.conf"


def find() -> tuple[str, str]:
    """redis-server's path and version ("7.0.15"); PrepareFailed when it is not installed."""
    path = shutil.which(BINARY)
    if path is None:
        raise PrepareFailed(f"{BINARY} is not installed on this machine (apt-get install redis-server)")
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r"v=(\S+)", done.stdout)
    return path, found.group(1) if found else "unknown"


def config(*, address: str, data_dir: Path, password: str | None) -> str:
    lines = [
        f"bind {address}",
        f"port {PORT}",
        # An explicit bind on a private address: protected mode (which refuses remote clients of a server
        # with no password and no bind) has nothing left to protect; kept on, it changes nothing here.
        "protected-mode yes",
        f'dir "{data_dir}"',
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "daemonize no",
        'logfile ""',
        'pidfile ""',
    ]
    if password is not None:
        lines.append(f'requirepass "{password}"')  # token_urlsafe: no quote or backslash to escape
    return "\n".join(lines) + "\n"


def prepare(*, data_dir: Path, address: str, password: str | None, user: User) -> str:
    """Write the config (each deploy: the address or password may have changed) and return the command."""
    binary, _ = find()
    make_dir(data_dir, user)
    write_private(data_dir / CONFIG, config(address=address, data_dir=data_dir, password=password), user)
    return shlex.join([binary, str(data_dir / CONFIG)])
