"""Finding and killing every process of a replica, wherever it went (new group, new session, orphaned).

Each replica is spawned with two markers in its environment, which its children inherit:
STACKBLAZE_INSTANCE=<key> (the replica instance) and STACKBLAZE_RUNNER=<pid>:<start>:<home> (the runner
that spawned it: its pid and start time, and the runner socket that names the STACKBLAZE_HOME). So a
grandchild that called setsid() is still found by reading /proc/<pid>/environ, a new runner finds what a
dead one left, and two homes on one machine never touch each other's processes. The process group and the
runner's subreaper role catch the rest. Standard library only: the runner imports this.
"""

from __future__ import annotations

import os
import signal

MARKER = "STACKBLAZE_INSTANCE"
RUNNER_MARKER = "STACKBLAZE_RUNNER"
_INSTANCE_NEEDLE = ("\0" + MARKER + "=").encode()
_RUNNER_NEEDLE = ("\0" + RUNNER_MARKER + "=").encode()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _stat_fields(pid: int | str) -> list[bytes]:
    # The fields after comm (field 2), which may contain spaces and parentheses: state is [0], ppid [1].
    return _read(f"/proc/{pid}/stat").rpartition(b")")[2].split()


def start_ticks(pid: int) -> int:
    """The process's start time (clock ticks since boot): with the pid, it names one process for good."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else 0


def runner_token(home: str, pid: int | None = None) -> str:
    """The STACKBLAZE_RUNNER value of the runner `pid` (default: this process) serving `home`."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_ticks(pid)}:{home}"


def _value(environ: bytes, needle: bytes) -> str | None:
    at = environ.find(needle)
    if at < 0:
        return None
    start = at + len(needle)
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else len(environ)].decode(errors="replace")


def _is_zombie(fields: list[bytes]) -> bool:
    return not fields or fields[0] in (b"Z", b"X")


def scan() -> list[tuple[int, str | None, str | None, int]]:
    """One pass over /proc: (pid, instance key, runner token, ppid) of every live process but this one.

    Processes of other users are unreadable to an unprivileged runner, and so never touched."""
    me = os.getpid()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:  # EMFILE: nothing can be found now; the caller's next round or sweep tries again
        return []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        fields = _stat_fields(name)
        if _is_zombie(fields):
            continue
        environ = b"\0" + _read(f"/proc/{name}/environ")
        found.append((int(name), _value(environ, _INSTANCE_NEEDLE), _value(environ, _RUNNER_NEEDLE),
                      int(fields[1]) if len(fields) > 1 else 0))
    return found


def find_instance_pids(key: str, *, main_pid: int | None = None) -> set[int]:
    """Every live process that belongs to the replica instance `key`."""
    processes = scan()
    found = {pid for pid, instance, _, _ in processes if instance == key}
    if main_pid is not None:
        # Descendants that scrubbed their environment are still below the main process.
        frontier = {main_pid} | found
        changed = True
        while changed:
            changed = False
            for pid, _, _, parent in processes:
                if parent in frontier and pid not in frontier:
                    frontier.add(pid)
                    found.add(pid)
                    changed = True
    return found


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
        killed += _kill_all(pids)
    return killed


def sweep(home: str, *, keep: str | None = None, rounds: int = 20) -> int:
    """SIGKILL every process a runner of `home` spawned, except those of the runner token `keep` (None:
    spare none); returns how many. A new runner calls it with its own token: what is left is a dead
    runner's; a runner shutting down calls it with None."""
    suffix = ":" + home
    killed = 0
    for _ in range(rounds):
        pids = {pid for pid, _, token, _ in scan() if token is not None and token.endswith(suffix) and token != keep}
        if not pids:
            break
        killed += _kill_all(pids)
    return killed


def _kill_all(pids: set[int]) -> int:
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    return killed
