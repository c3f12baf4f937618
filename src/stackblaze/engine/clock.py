"""Time for the engine's policy: what time it is, and a callback at an exact time — real, or a fake for tests.

The supervisor asks only this for time, so a test can drive the real restart policy, rollout gates and
deadlines through hours of back-off in microseconds with `FakeClock.advance`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        """Run `callback` in the event loop at `when` (at once if that has passed)."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        return asyncio.get_running_loop().call_later(max(0.0, when - time.time()), callback)


class _FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told: `await advance(seconds)` runs every callback that falls due, in
    order, each at its own time, and lets the event loop settle after each (so the work it starts is done)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, Callable[[], None], _FakeHandle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        if when <= self.now:  # already due: on the next turn of the loop, as a real timer of 0 s
            return asyncio.get_running_loop().call_soon(callback)
        handle = _FakeHandle()
        heapq.heappush(self._timers, (when, next(self._order), callback, handle))
        return handle

    def next_due(self) -> float | None:
        """When the next live timer falls due (None: nothing scheduled)."""
        while self._timers and self._timers[0][3].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def advance(self, seconds: float) -> None:
        end = self.now + seconds
        await settle()
        while (due := self.next_due()) is not None and due <= end:
            when, _, callback, _ = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            callback()
            await settle()
        self.now = end
        await settle()


async def settle(rounds: int = 50) -> None:
    """Let every task that is ready run (and those it wakes), without waiting for any real time."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class ScaledClock:
    """A clock whose time runs 1/scale as fast as real time from its creation (scale 0.01: 100 seconds a real
    second), for the fake cluster under STACKBLAZE_TIME_SCALE: its kubelet's back-off and its Deployments'
    minReadySeconds are written in unscaled seconds, as the real ones are. `to_wall` and `from_wall` map its
    times to real ones and back, so that what users read (ps, events, logs) is on the real clock."""

    def __init__(self, scale: float, *, origin: float | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"ScaledClock: scale {scale!r} must be above 0")
        self.scale = scale
        # A stored origin (the cron scheduler's) keeps platform time continuous across daemon restarts.
        self._origin = time.time() if origin is None else origin

    def time(self) -> float:
        return self.from_wall(time.time())

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        return asyncio.get_running_loop().call_later(max(0.0, (when - self.time()) * self.scale), callback)

    def to_wall(self, when: float) -> float:
        return self._origin + (when - self._origin) * self.scale

    def from_wall(self, at: float) -> float:
        return self._origin + (at - self._origin) / self.scale
