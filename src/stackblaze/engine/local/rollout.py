"""One rollout of a service to a new config, as a Deployment's: progressing, then complete or failed.

The supervisor owns the processes; this is the record it keeps of what a rollout is doing, what `deploy`
and `rollout status` report, and the timers (availability checks, the progress deadline) it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stackblaze.engine.clock import Handle
from stackblaze.engine.local.slots import Desired, Live, Slot, lives
from stackblaze.engine.rollouts import RolloutBase, RolloutState


@dataclass
class Rollout(RolloutBase):
    from_config: str | None  # the config that ran before (what a failure restores)
    timers: list[Handle] = field(default_factory=list)  # availability checks and the progress deadline

    def finish(self, state: RolloutState, at: float) -> None:
        super().finish(state, at)
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


def available(live: Live | None, desired: Desired, *, now: float, scale: float) -> bool:
    """A replica of the desired config that has run min_ready without exiting."""
    return live is not None and live.config == desired.config and now - live.started_at >= desired.min_ready * scale


@dataclass(frozen=True)
class RollingStep:
    """What one step of a rolling rollout does, in this order."""

    promote: tuple[Slot, ...]  # an available incoming replica takes the slot; the old one stops
    retire: tuple[Slot, ...]  # old replicas that stop before a replacement is available (max_unavailable)
    start: tuple[Slot, ...]  # empty slots (and retired ones) that get a new replica
    surge: tuple[Slot, ...]  # slots whose old replica gets a new one started beside it (max_surge)


def plan_rolling(slots: Sequence[Slot], desired: Desired, *, processes: int, now: float,
                 scale: float) -> RollingStep:
    """A Deployment's rules over the processes we see: at least replicas - max_unavailable available, and
    at most replicas + max_surge processes — those still stopping included, so a slow stop holds the surge."""
    want = desired.replicas

    def ready(live: Live | None) -> bool:
        return available(live, desired, now=now, scale=scale)

    promote = [s for s in slots if ready(s.incoming)]
    old = [s for s in slots if s not in promote and s.current is not None and s.current.config != desired.config]
    up = len(old) + sum(1 for s in slots if s in promote or ready(s.current))
    retire: list[Slot] = []
    for slot in sorted(old, key=lambda s: -s.replica):
        if up - 1 < want - desired.rolling.unavailable(want):
            break
        if slot.incoming is None:
            retire.append(slot)
            up -= 1
    budget = want + desired.rolling.surge(want) - processes
    empty = [s for s in slots if s in retire or (s.current is None and s.incoming is None and s.timer is None)]
    start = empty[:max(0, budget)]
    budget -= len(start)
    surge = [s for s in old if s not in retire and s.incoming is None][:max(0, budget)]
    return RollingStep(tuple(promote), tuple(retire), tuple(start), tuple(surge))


def is_complete(slots: Sequence[Slot], service_slots: Sequence[Slot], desired: Desired, *, now: float,
                scale: float) -> bool:
    """Every slot runs an available replica of the desired config and nothing else of the service is left."""
    return (all(available(s.current, desired, now=now, scale=scale) for s in slots)
            and not any(s.incoming is not None or s.old for s in service_slots))


def count(rollout: Rollout, service_slots: Sequence[Slot], desired: Desired | None, *, now: float,
          scale: float) -> dict[str, int]:
    """The figures `deploy` shows while it waits: new replicas running and available, old ones left."""
    new = [live for slot in service_slots for live in (slot.current, slot.incoming)
           if live is not None and live.config == rollout.config]
    old = [live for slot in service_slots for live in lives(slot) if live.config != rollout.config]
    ready = (desired.min_ready if desired else 0.0) * scale
    return {"replicas": desired.replicas if desired else 0, "new_running": len(new),
            "new_available": sum(1 for live in new if now - live.started_at >= ready), "old_running": len(old)}
