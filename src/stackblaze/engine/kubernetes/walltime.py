"""The cluster's clock and the one users read: a fake cluster runs on a scaled clock, its stamps shown as wall time."""

from __future__ import annotations

from datetime import UTC, datetime

from stackblaze.engine.clock import Clock, ScaledClock
from stackblaze.engine.kubernetes.status import seconds


def stamp(when: float) -> str:
    """A time as the API writes it (and our CRI files do), to the microsecond."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _exact(text: str) -> str:
    """An API log timestamp (nanoseconds) as ours (microseconds), without a trip through a float."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WallTime:
    """Converts between the cluster's clock (`clock`) and the wall clock that events and logs are read on."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._scaled = clock if isinstance(clock, ScaledClock) else None

    def wall(self, when: float) -> float:
        return self._scaled.to_wall(when) if self._scaled else when

    def now(self) -> float:
        return self.wall(self.clock.time())

    def to_local(self, text: str) -> str:
        """A log line's cluster stamp as the wall-clock stamp written to the CRI file."""
        if self._scaled is None:
            return _exact(text)
        return stamp(self._scaled.to_wall(seconds(text) or 0.0))

    def to_cluster(self, at: str) -> str:
        """A wall-clock stamp from a CRI file as the cluster's sinceTime."""
        if self._scaled is None:
            return at
        # a millisecond early: a line at that very time comes back, and is skipped as already written
        return stamp(self._scaled.from_wall(seconds(at) or 0.0) - 0.001)
