"""What every engine keeps of a rollout, and how a caller waits for one to settle: one record, one shape.

Each engine subclasses `RolloutBase` with what it needs to decide the outcome (the local engine's timers, a
Deployment's generation); the states, `finish` and the record `deploy` and `rollout status` show are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal, TypeVar

from stackblaze.engine.protocol import RolloutRecord

RolloutState = Literal["progressing", "complete", "failed"]


@dataclass
class RolloutBase:
    project: str
    service: str
    config: str  # the config being rolled out
    release: int
    strategy: str
    started_at: float
    from_release: int | None  # the release that ran before (None: a first deploy, nothing to keep)
    # Keyword-only, so that a subclass can add fields without defaults after these.
    _: KW_ONLY
    state: RolloutState = "progressing"
    reason: str | None = None  # why it failed, in one line
    exit: dict[str, Any] | None = None  # the exit that failed it, with its last lines
    restored: bool = False  # the previous release runs again (or never stopped)
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state != "progressing"

    def finish(self, state: RolloutState, at: float) -> None:
        self.state = state
        self.finished_at = at

    def record(self, counts: dict[str, int]) -> RolloutRecord:
        """What `deploy --json` and `rollout status --json` show."""
        return {
            "service": self.service, "state": self.state, "release": self.release,
            "from_release": self.from_release, "strategy": self.strategy, "started_at": self.started_at,
            "finished_at": self.finished_at, "reason": self.reason, "exit": self.exit,
            "restored": self.restored, **counts,
        }


R = TypeVar("R", bound=RolloutBase)


async def wait_settled(changed: asyncio.Condition, rollout: R, record_of: Callable[[R], RolloutRecord],
                       on_change: Callable[[RolloutRecord], None], timeout: float | None) -> RolloutRecord:
    """Until the rollout is complete or failed, looking each time `changed` is notified; `on_change` hears
    each record that differs from the last (the counts `deploy` shows on the way)."""
    last: RolloutRecord | None = None

    def settled() -> bool:
        nonlocal last
        record = record_of(rollout)
        if record != last:
            last = record
            on_change(record)
        return rollout.done

    async with changed:
        await asyncio.wait_for(changed.wait_for(settled), timeout=timeout)
    return record_of(rollout)
