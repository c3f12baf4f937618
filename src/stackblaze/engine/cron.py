"""What a cron service's runs are, for both engines and the control plane: the run record, where runs are
kept (RunStore: state/cron.py's CronStore, or its MemoryRunStore for tests), and what an engine that schedules runs
itself offers besides the Engine protocol (CronEngine: the local engine; a cluster's CronJob controller
schedules its own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

Trigger = Literal["schedule", "manual", "catch-up", "retry"]


class RunRow(Protocol):
    """One run of a cron service (state/cron.py keeps them): numbered per service from 1; its log is
    `<logs>/<project>/<service>/<number>.log`, so `logs` reads it as it reads a replica's."""

    @property
    def project(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def number(self) -> int: ...
    @property
    def trigger(self) -> str: ...  # schedule | manual | catch-up | retry
    @property
    def attempt(self) -> int: ...  # 1, then 2.. for the retries of a failed run
    @property
    def started(self) -> float: ...  # Unix time (real)
    @property
    def log_path(self) -> str: ...
    @property
    def key(self) -> str: ...  # the runner's instance key
    @property
    def release(self) -> int | None: ...
    @property
    def ended(self) -> float | None: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def exit_signal(self) -> str | None: ...  # "SIGTERM"
    @property
    def reason(self) -> str | None: ...  # why it was stopped: timeout | replaced | stopped | runner-lost
    @property
    def duration(self) -> float | None: ...
    @property
    def ok(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


class RunStore(Protocol):
    """Where runs, suspensions and the last tick considered are kept, across daemon restarts."""

    def clock_origin(self) -> float:
        """When platform time began for this home (ScaledClock's origin): fixed once, so that a daemon that
        restarts under STACKBLAZE_TIME_SCALE finds the same platform time its predecessor left."""
        ...

    def suspended(self, project: str, service: str) -> bool: ...

    def last_tick(self, project: str, service: str) -> float | None: ...

    def set_last_tick(self, project: str, service: str, tick: float) -> None: ...

    def add_run(self, project: str, service: str, *, trigger: str, attempt: int, started: float, key: str,
                release: int | None, log_dir: str) -> RunRow:
        """A new run numbered after the service's last; its log_path is `<log_dir>/<number>.log`."""
        ...

    def finish_run(self, project: str, service: str, number: int, *, ended: float, exit_code: int | None,
                   exit_signal: str | None, reason: str | None) -> RunRow | None: ...

    def runs(self, project: str, service: str, *, limit: int = 100) -> Sequence[RunRow]:
        """Newest first."""
        ...

    def run(self, project: str, service: str, number: int) -> RunRow | None: ...

    def prune_runs(self, project: str, service: str, *, keep: int) -> Sequence[RunRow]:
        """Drop finished runs beyond the newest `keep`; returns those dropped (their logs go too)."""
        ...

    def forget(self, project: str, service: str | None = None) -> None: ...


@runtime_checkable
class CronEngine(Protocol):
    """An engine that runs cron services' ticks itself (the local one)."""

    async def run_now(self, project: str, service: str) -> RunRow: ...

    def next_run(self, project: str, service: str) -> float | None:
        """When the next tick runs (Unix time, real); None: not scheduled (suspended, stopped, not cron)."""
        ...

    def active_runs(self, project: str, service: str) -> list[int]: ...
