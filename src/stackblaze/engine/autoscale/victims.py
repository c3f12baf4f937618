"""Which replicas stop on a scale-down: idle ones first when busy state is known, then the highest index
(Heroku's predictable rule), never one that is already draining, a busy one only when no idle one is left."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stackblaze.spec.autoscale import Prefer


@dataclass(frozen=True)
class ReplicaInfo:
    index: int  # STACKBLAZE_REPLICA, 1..N
    busy: bool | None  # None: unknown (no heartbeat, no probe answer yet)
    draining: bool = False


def choose_victims(replicas: Sequence[ReplicaInfo], count: int, prefer: Prefer) -> list[int]:
    """The indexes of `count` replicas to stop (fewer if fewer are not draining), in the order to stop them.

    prefer idle: known-idle replicas first, then those of unknown state, then busy ones, each group highest
    index first; an unknown state is stopped before a known busy one because it may well be idle, and a
    replica known to be busy is the one a stop would most likely cost a job. prefer highest: by index only."""
    candidates = [r for r in replicas if not r.draining]
    if prefer == "idle":
        candidates.sort(key=lambda r: (0 if r.busy is False else 1 if r.busy is None else 2, -r.index))
    else:
        candidates.sort(key=lambda r: -r.index)
    return [r.index for r in candidates[:max(0, count)]]
