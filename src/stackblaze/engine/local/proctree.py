"""Finding and killing every process of a replica, wherever it went (new group, new session, orphaned).

Each replica is spawned with STACKBLAZE_INSTANCE=<key> in its environment; children inherit it, so a
grandchild that called setsid() is still found by reading /proc/<pid>/environ. The process group and the
runner's subreaper role catch the rest. Standard library only: the runner imports this.
"""

from __future__ import annotations

import os
import signal

MARKER = "STACKBLAZE_INSTANCE"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _parent_of(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    # Field 4 is the ppid; the comm field (2) may contain spaces and parentheses, so split after it.
    tail = stat.rpartition(b")")[2].split()
    return int(tail[1]) if len(tail) > 1 else 0


def find_instance_pids(key: str, *, main_pid: int | None = None) -> set[int]:
    """Every live process that belongs to the replica instance `key`."""
    needle = b"\0" + f"{MARKER}={key}".encode() + b"\0"
    me = os.getpid()
    found: set[int] = set()
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        environ = b"\0" + _read(f"/proc/{pid}/environ")
        if needle in environ:
            found.add(pid)
        elif main_pid is not None:
            parents[pid] = _parent_of(pid)
    if main_pid is not None:
        # Descendants that scrubbed their environment are still below the main process.
        frontier = {main_pid} | found
        changed = True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in frontier and pid not in frontier:
                    frontier.add(pid)
                    found.add(pid)
                    changed = True
    return {pid for pid in found if not _is_zombie(pid)}


def _is_zombie(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    tail = stat.rpartition(b")")[2].split()
    return not tail or tail[0] in (b"Z", b"X")


def kill_instance(key: str, *, main_pid: int, rounds: int = 20) -> int:
    """SIGKILL the group and every process of the instance until none is left; returns how many."""
    killed = 0
    for _ in range(rounds):
        try:
            os.killpg(main_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        pids = find_instance_pids(key, main_pid=main_pid)
        pids.discard(main_pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
    return killed
