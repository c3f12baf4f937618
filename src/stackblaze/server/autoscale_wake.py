"""The push side of one autoscaled worker's loop (server/autoscaling.py): while the service is at 0 replicas, a
listener task (engine/autoscale/wake.py) that cuts the loop's sleep short when the broker says work may have
come, so a job enqueued to an idle service is read at once instead of at the next poll.

Only at 0, only when not paused: a busy service gets no listener, so a busy broker gets no extra load. A push
only asks for an evaluation (the read decides); pushes closer together than PUSH_GAP share one. A listener
that fails reconnects with backoff, and after each (re)subscription the loop evaluates once, since pushes sent
while it was not listening are lost. Where no push can be had, the loop polls and the user is told once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from collections.abc import Callable

from stackblaze.engine.autoscale.wake import Listener, NoPush, Push, open_listener
from stackblaze.spec.autoscale import Queues

log = logging.getLogger("stackblaze.autoscale")
PUSH_GAP = 0.05  # real seconds between two push-driven evaluations: a burst of enqueues is one read, not many
BACKOFF = (0.5, 30.0)  # real seconds: the first retry of a lost listener, and the most between two
MAX_TIMERS = 1024  # delayed jobs' due times kept; later ones are found by the poll
SWITCH = "STACKBLAZE_AUTOSCALE_PUSH"  # off: poll only (what bench/autoscale_wake.py compares push with)
RESUBSCRIBED = ""  # an evaluation after (re)subscribing: not a push, so the decision names none

Say = Callable[[str, dict[str, object]], None]


class Waker:
    """`follow` after each evaluation (starts or stops the listener), `sleep` instead of the poll's sleep."""

    def __init__(self, say: Say, *, open_: Callable[..., Listener] = open_listener) -> None:
        self._say, self._open = say, open_
        self._task: asyncio.Task[None] | None = None
        self._queues: Queues | None = None
        self._pending: str | None = None
        self._timers: list[tuple[float, str]] = []  # (epoch due time, hint), sorted
        self._event = asyncio.Event()
        self._last = 0.0
        self._told: set[str] = set()

    @property
    def listening(self) -> bool:
        return self._task is not None and not self._task.done()

    def follow(self, queues: Queues, *, own: bool, listen: bool) -> None:
        """Listen on `queues` (url expanded; `own`: the project's own Redis) when `listen`, else stop."""
        if not listen or queues != self._queues:
            self._stop()
        if listen and self._task is None:
            self._queues = queues
            self._task = asyncio.create_task(self._listen(queues, own), name=f"autoscale wake {queues.kind}")

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task, self._queues, self._pending = None, None, None
        self._timers.clear()

    async def close(self) -> None:
        task = self._task
        self._stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sleep(self, seconds: float) -> str | None:
        """Up to `seconds` (real), less when a push comes or a delayed job falls due: its hint, else None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            hint = self._take()
            if hint is not None:
                gap = self._last + PUSH_GAP - loop.time()
                if gap > 0:
                    await asyncio.sleep(gap)
                self._last = loop.time()
                return hint
            left = deadline - loop.time()
            if left <= 0:
                return None
            if self._timers:
                left = min(left, max(0.0, self._timers[0][0] - time.time()))
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)

    def _take(self) -> str | None:
        if self._pending is not None:
            hint, self._pending = self._pending, None
            return hint
        if self._timers and self._timers[0][0] <= time.time():
            return self._timers.pop(0)[1]
        return None

    def _heard(self, push: Push) -> None:
        now = time.time()
        if push.due_at is not None and push.due_at > now:
            self._timer(push.due_at, push.hint)
        else:
            self._pending = push.hint
        if push.again > 0:
            self._timer(now + push.again, push.hint)
        self._event.set()

    def _timer(self, at: float, hint: str) -> None:
        bisect.insort(self._timers, (at, hint))
        del self._timers[MAX_TIMERS:]

    def _tell(self, key: str, message: str, details: dict[str, object]) -> None:
        """Say it in an event once per loop (a daemon start or a deploy starts a new one)."""
        if key not in self._told:
            self._told.add(key)
            self._say(message, details)

    async def _listen(self, queues: Queues, own: bool) -> None:
        try:
            if os.environ.get(SWITCH, "on") == "off":
                raise NoPush(f"push wake is off ({SWITCH}=off in the daemon's environment): woken from 0 by the poll")
            listener = self._open(queues, may_configure=own)
        except NoPush as why:
            self._tell("nopush", str(why), {"push": False, "reason": str(why)})
            return
        delay = BACKOFF[0]
        try:
            while True:
                try:
                    for push in await listener.subscribe():
                        self._heard(push)
                    self._heard(Push(RESUBSCRIBED))
                    self._tell("push", f"woken from 0 by push ({queues.kind}), the poll as a backstop",
                               {"push": True, "kind": queues.kind})
                    delay = BACKOFF[0]
                    while True:
                        self._heard(await listener.next())
                except NoPush as why:
                    self._tell("nopush", str(why), {"push": False, "reason": str(why)})
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a lost broker, or a bug here: the poll still wakes; never the loop
                    log.warning("autoscale push listener (%s): %s; again in %gs", queues.kind, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])
        finally:
            with contextlib.suppress(Exception):
                await listener.close()
