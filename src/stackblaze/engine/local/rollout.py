"""One rollout of a service to a new config, as a Deployment's: progressing, then complete or failed.

The supervisor owns the processes; this is the record it keeps of what a rollout is doing, what `deploy`
and `rollout status` report, and the timers (availability checks, the progress deadline) it holds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

RolloutState = Literal["progressing", "complete", "failed"]


@dataclass
class Rollout:
    project: str
    service: str
    config: str  # the config being rolled out
    release: int
    strategy: str
    started_at: float
    from_release: int | None  # the release that ran before (None: a first deploy, nothing to keep)
    from_config: str | None
    state: RolloutState = "progressing"
    reason: str | None = None  # why it failed, in one line
    exit: dict[str, Any] | None = None  # the exit that failed it, with its last lines
    restored: bool = False  # the previous release runs again (or never stopped)
    finished_at: float | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state != "progressing"

    def finish(self, state: RolloutState, at: float) -> None:
        self.state = state
        self.finished_at = at
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def record(self, counts: dict[str, int]) -> dict[str, Any]:
        """What `deploy --json` and `rollout status --json` show."""
        return {
            "service": self.service, "state": self.state, "release": self.release,
            "from_release": self.from_release, "strategy": self.strategy, "started_at": self.started_at,
            "finished_at": self.finished_at, "reason": self.reason, "exit": self.exit,
            "restored": self.restored, **counts,
        }
