"""One spawned replica as the runner knows it, and the record of it that clients read.

Standard library only: the runner imports this (and no typing or dataclasses, for its memory's sake).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any

    from stackblaze.engine.local.logwriter import LineSplitter, LogFile


class Instance:
    __slots__ = ("acked", "dropped_error", "dropped_lines", "dropped_since", "exit_code", "exit_signal",
                 "exited_at", "grace", "key", "killed_after_grace", "log", "meta", "oom_accounting", "oom_killed",
                 "outage_start", "pid", "pipes", "popen", "started_at", "stop_deadline", "stop_signal")

    def __init__(self, *, key: str, pid: int, popen: subprocess.Popen[bytes], log: LogFile, started_at: float,
                 meta: dict[str, Any], oom_accounting: bool) -> None:
        self.key = key
        self.pid = pid
        self.popen = popen
        self.log = log
        self.started_at = started_at
        self.meta = meta
        self.pipes: dict[int, LineSplitter] = {}
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.exited_at: float | None = None
        self.stop_deadline: float | None = None
        self.stop_signal: int | None = None
        self.grace: float | None = None
        self.killed_after_grace: float | None = None  # set only when the runner's SIGKILL ended the grace
        self.oom_accounting = oom_accounting
        self.oom_killed: bool | None = None  # None: no cgroup memory accounting here
        self.dropped_lines = 0
        self.dropped_since: float | None = None
        self.dropped_error: str | None = None
        self.outage_start = 0  # dropped_lines when the current outage began
        self.acked = False

    @property
    def exited(self) -> bool:
        return self.exited_at is not None

    def record(self) -> dict[str, Any]:
        """What `list` and the exit event carry (see the README's runner protocol for each field)."""
        return {
            "key": self.key,
            "meta": self.meta,
            "pid": self.pid,
            "started_at": self.started_at,
            "state": "exited" if self.exited else ("stopping" if self.stop_deadline else "running"),
            "stop_requested": self.stop_signal is not None,
            "stop_signal": self.stop_signal,
            "grace": self.grace,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "exited_at": self.exited_at,
            "killed_after_grace": self.killed_after_grace,
            "oom_killed": self.oom_killed,
            "dropped_lines": self.dropped_lines,
            "dropped_since": self.dropped_since,
            "dropped_error": self.dropped_error,
        }
