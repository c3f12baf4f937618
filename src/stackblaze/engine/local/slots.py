"""What the supervisor keeps per service and replica: the desired state, and each slot's processes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stackblaze.engine.clock import Handle
from stackblaze.engine.protocol import Desired

__all__ = ["Desired", "EventSink", "Live", "Slot", "StatusStore", "lives"]


class StatusStore(Protocol):
    def replica_statuses(self, project: str) -> dict[tuple[str, int], dict[str, Any]]: ...
    def save_replica_status(self, project: str, service: str, replica: int, status: dict[str, Any]) -> None: ...
    def delete_replica_status(self, project: str, service: str, replica: int) -> None: ...


EventSink = Callable[..., None]


@dataclass
class Live:
    key: str
    pid: int
    started_at: float
    release: int
    config: str
    stopping: bool = False


@dataclass
class Slot:
    project: str
    service: str
    replica: int
    current: Live | None = None
    incoming: Live | None = None  # a new release's replica started beside `current`, not yet available
    old: dict[str, Live] = field(default_factory=dict)  # asked to stop
    restart_count: int = 0  # restarts that happened
    restart_pending: bool = False  # an exit's restart is planned and not done yet
    dropped_lines: int = 0  # log lines the runner could not write (disk full), since the daemon started
    dropping: bool = False  # it cannot write this replica's log right now
    streak: int = 0
    last_exit: dict[str, Any] | None = None
    next_restart_at: float | None = None
    timer: Handle | None = None
    config: str | None = None  # what the restart counters count for: a new rollout starts them over

    def saved(self) -> dict[str, Any]:
        return {
            "restart_count": self.restart_count, "streak": self.streak, "last_exit": self.last_exit,
            "next_restart_at": self.next_restart_at, "config": self.config, "restart_pending": self.restart_pending,
        }


def lives(slot: Slot) -> list[Live]:
    """Every process of the slot: the current replica, a rollout's incoming one, those stopping."""
    return [live for live in (slot.current, slot.incoming) if live is not None] + list(slot.old.values())
