"""The daemon's lock, `run/daemon.lock`: one daemon per home, and the PID of the one that holds it.

The daemon takes an exclusive `flock` for its whole life and writes its PID into the file once it holds
it. The file is opened without truncating, so a daemon that loses the race never wipes the PID of the one
that won; the CLI reads that PID to say which daemon does not answer.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

# A CLI asking who holds the lock takes it shared for an instant; a starting daemon that meets that
# probe tries again for this long before it concludes that another daemon runs.
PATIENCE = 1.0


class LockHeld(Exception):
    """Another process holds the lock; `pid` is the one written in the file (None when not written yet)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid}" if pid else "held by another process")
        self.pid = pid


def acquire(path: Path, *, patience: float = PATIENCE) -> int:
    """Take the lock and write this process's PID into it; return the descriptor, which must stay open
    (the lock goes with it). Raises LockHeld when another process keeps it for `patience` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                pid = _written_pid(fd)
                os.close(fd)
                raise LockHeld(pid) from None
            time.sleep(0.02)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def held_by(path: Path) -> int | None:
    """The PID of the process holding the lock (0 when it holds it but has not written its PID yet), or
    None when no process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _written_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _written_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
