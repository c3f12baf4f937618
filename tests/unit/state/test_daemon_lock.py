"""The daemon's lock: one holder, its PID readable by others, never wiped by a process that loses the race."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from stackblaze.state.daemon_lock import LockHeld, acquire, held_by

HOLD = """
import sys
from pathlib import Path
from stackblaze.state.daemon_lock import acquire
acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@contextmanager
def holding(script: str, lock: Path) -> Iterator[int]:
    """Another process that runs `script` to take the lock, holding it until the block ends; its PID."""
    holder = subprocess.Popen([sys.executable, "-c", script, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()


def test_the_holder_is_named_and_a_second_taker_changes_nothing(tmp_path: Path) -> None:
    lock = tmp_path / "daemon.lock"
    assert held_by(lock) is None  # no file yet
    with holding(HOLD, lock) as pid:
        assert held_by(lock) == pid
        with pytest.raises(LockHeld) as refused:
            acquire(lock, patience=0.1)
        assert refused.value.pid == pid
        assert lock.read_text() == f"{pid}\n"  # opened without truncating
        assert held_by(lock) == pid  # probing did not take it away
    assert held_by(lock) is None  # the lock went with the process
    fd = acquire(lock, patience=0.1)
    try:
        assert lock.read_text().strip().isdigit() and int(lock.read_text()) != pid
        assert lock.stat().st_mode & 0o777 == 0o600
    finally:
        os.close(fd)


def test_a_holder_that_has_not_written_its_pid_yet_is_still_a_holder(tmp_path: Path) -> None:
    lock = tmp_path / "daemon.lock"
    lock.write_text("")
    script = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
              "print('held', flush=True); sys.stdin.read()")
    with holding(script, lock):
        assert held_by(lock) == 0
        with pytest.raises(LockHeld) as refused:
            acquire(lock, patience=0.05)
        assert refused.value.pid is None and "another process" in str(refused.value)
