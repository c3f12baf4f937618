"""Following replica log files live: woken by inotify when a file is written, rotated or created.

A follower used to read every 50 ms, so a line waited 25 ms on average and 50 at worst before anyone
looked. Here the kernel says when a log directory changed: a write (MODIFY), a rotation (the runner
renames `N.log` to `N.log.1`, MOVED_*, and creates a new `N.log`, CREATE), a new replica's file or a new
service's directory (CREATE). inotify watches directories, not files, so a rotated file or a new replica
needs no new watch.

One inotify instance per event loop is shared by every follower (`logs --tail`, drains): the kernel
allows 128 instances per user by default, so one per follower would run out under a busy dashboard. It
exists while someone follows and is closed with the last one. Woken or not, a follower also reads every
FALLBACK seconds (a directory created between a look and its watch, a queue overflow); where inotify
cannot be had (not Linux, the instance or watch limits reached) it reads every POLL seconds, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from asyncinotify import Inotify, Mask, Watch

from stackblaze.logs.reader import Follower
from stackblaze.logs.record import LogRecord

log = logging.getLogger("stackblaze.logs")

FALLBACK = 1.0  # seconds between reads with inotify: a safety net, not the way lines arrive
POLL = 0.05  # seconds between reads without inotify
MASK = Mask.MODIFY | Mask.CREATE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.DELETE | Mask.ONLYDIR


class Wake:
    """One follower's subscription: set when one of its directories changes."""

    def __init__(self, hub: LogWatch) -> None:
        self._hub = hub
        self.event = asyncio.Event()
        self.dirs: frozenset[Path] = frozenset()

    @property
    def live(self) -> bool:
        """Whether inotify wakes it (False: it polls)."""
        return self._hub.live

    def watch(self, dirs: Iterable[Path]) -> None:
        """Be woken by changes in exactly these directories (those that do not exist are left out)."""
        wanted = frozenset(dirs)
        if wanted != self.dirs:
            self._hub.change(self, wanted)

    async def wait(self, *, poll: float | None = None) -> None:
        """Until a change since the last `event.clear()`, or FALLBACK; without inotify, `poll` (default POLL)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), FALLBACK if self.live else POLL if poll is None else poll)

    def close(self) -> None:
        self._hub.leave(self)


class LogWatch:
    """The loop's inotify instance: each directory watched once, while a follower needs it."""

    _hubs: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LogWatch]] = weakref.WeakKeyDictionary()

    @classmethod
    def subscribe(cls) -> Wake:
        """A new subscription on the running loop's instance (created if it has none)."""
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(loop)
        if hub is None:
            hub = cls._hubs[loop] = cls(loop)
        wake = Wake(hub)
        hub.wakes.add(wake)
        return wake

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.wakes: set[Wake] = set()
        self._watches: dict[Path, Watch] = {}
        self._by_dir: dict[Path, set[Wake]] = {}
        self._inotify: Inotify | None = None
        self._reader: asyncio.Task[None] | None = None
        try:
            self._inotify = Inotify(cache_size=64)
        except OSError as exc:  # EMFILE: max_user_instances reached; or no inotify here
            log.warning("log followers poll every %g s: inotify is not available (%s)", POLL, exc)
            return
        self._reader = loop.create_task(self._read(self._inotify), name="log-inotify")

    @property
    def live(self) -> bool:
        return self._inotify is not None

    def change(self, wake: Wake, dirs: frozenset[Path]) -> None:
        for gone in wake.dirs - dirs:
            self._drop(wake, gone)
        for path in dirs - wake.dirs:
            if self._add(path):
                self._by_dir.setdefault(path, set()).add(wake)
        wake.dirs = frozenset(path for path in dirs if wake in self._by_dir.get(path, ()))

    def leave(self, wake: Wake) -> None:
        for path in wake.dirs:
            self._drop(wake, path)
        wake.dirs = frozenset()
        self.wakes.discard(wake)
        if not self.wakes:
            self._close()

    def _add(self, path: Path) -> bool:
        if self._inotify is None:
            return False
        if path in self._watches:
            return True
        try:
            self._watches[path] = self._inotify.add_watch(path, MASK)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # max_user_watches reached: this directory is polled
                log.warning("log followers poll %s every %g s: inotify watch limit reached", path, FALLBACK)
            return False  # ENOENT, ENOTDIR: not there (yet); the fallback read looks again
        return True

    def _drop(self, wake: Wake, path: Path) -> None:
        users = self._by_dir.get(path)
        if users is None:
            return
        users.discard(wake)
        if not users:
            del self._by_dir[path]
            watch = self._watches.pop(path, None)
            if watch is not None and self._inotify is not None:
                with contextlib.suppress(OSError):  # EINVAL: the directory was removed, the watch with it
                    self._inotify.rm_watch(watch)

    def _close(self) -> None:
        inotify = self._inotify
        if self._reader is not None and inotify is not None:
            # closed once the reader has let go of its fd: closing it under a registered reader could hand
            # the fd number to another file while the loop still selects on it
            self._reader.add_done_callback(lambda _: inotify.close())
            self._reader.cancel()
        self._inotify = None
        self._watches.clear()
        self._by_dir.clear()
        if self._hubs.get(self._loop) is self:
            del self._hubs[self._loop]

    async def _read(self, inotify: Inotify) -> None:
        async for event in inotify:
            path = event.watch.path if event.watch is not None else None
            if Mask.Q_OVERFLOW in event.mask:  # events were lost: every follower reads
                for wake in self.wakes:
                    wake.event.set()
                continue
            if path is None:
                continue
            if Mask.IGNORED in event.mask:  # the directory is gone (a destroyed project): its watch too
                if self._watches.get(path) is event.watch:
                    del self._watches[path]
                for wake in self._by_dir.pop(path, ()):
                    wake.dirs = wake.dirs - {path}
                    wake.event.set()
                continue
            for wake in self._by_dir.get(path, ()):
                wake.event.set()


def watched_dirs(project_dir: Path, service: str | None) -> list[Path]:
    """Where a follower's files appear: the project's log directory (new services) and its services' own."""
    if service is not None:
        return [project_dir, project_dir / service]
    try:
        return [project_dir, *(path for path in project_dir.iterdir() if path.is_dir())]
    except OSError:
        return [project_dir]


class LiveFollower(Follower):
    """A Follower that can wait for its files to change: `poll()`, then `await wait()`, in turn, in the loop.

    `poll` re-arms the wake-up before it reads, so a write during the read wakes the next `wait`."""

    def __init__(self, project_dir: Path, service: str | None, replica: int | None = None) -> None:
        super().__init__(project_dir, service, replica)
        self._wake: Wake | None = None  # subscribed on the first poll: a stream never started holds nothing

    def poll(self) -> list[LogRecord]:
        if self._wake is None:
            self._wake = LogWatch.subscribe()
        self._wake.event.clear()
        self._wake.watch(watched_dirs(self._project_dir, self._service))
        return super().poll()

    async def wait(self) -> None:
        if self._wake is None:
            return
        await self._wake.wait()

    def close(self) -> None:
        if self._wake is not None:
            self._wake.close()
            self._wake = None
        super().close()
