"""Runs every drain: one asyncio task each, in the daemon's loop, reading from its cursor and delivering.

At-least-once: a batch's cursors are saved (through the injected CursorStore) only after the receiver
acknowledged it, so a receiver that is down, or a daemon that is killed, costs duplicates, never a gap.
Failures retry the same batch with a doubling delay up to a cap; the first failure and the recovery are
events (`drain-failed`, `drain-recovered`), and so are lines dropped or possibly lost (`drain-dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stackblaze.errors import StackblazeError
from stackblaze.logs.drains.cursor import DEFAULT_MAX_HELD_BYTES, Batch, Chunk, Key, LogCursor, Position
from stackblaze.logs.drains.sink import DeliveryError, Sink, open_sink
from stackblaze.logs.drains.url import DrainURL, parse_url
from stackblaze.logs.follow import LogWatch, watched_dirs

log = logging.getLogger("stackblaze.drains")
POLL_INTERVAL = 0.05  # how often an idle drain looks for new lines where inotify cannot wake it
WATCH_INTERVAL = 0.25  # how often new log files are pinned, even while a batch is being retried
TEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class DrainConfig:
    id: int
    project: str
    service: str | None
    url: str  # with its credentials: never log or show it, use `masked`
    failing_since: float | None = None  # as saved: a drain that was failing says when it recovers
    last_error: str | None = None

    @property
    def parsed(self) -> DrainURL:
        return parse_url(self.url)

    @property
    def masked(self) -> str:
        return self.parsed.masked


class CursorStore(Protocol):
    """Where cursors and counters persist (the daemon's SQLite store). Counters are added, not set."""

    def load_positions(self, drain_id: int) -> dict[tuple[str, int], tuple[int, int]]: ...

    def save_progress(self, drain_id: int, *, positions: Mapping[tuple[str, int], tuple[int, int]], sent: int,
                      retried: int, dropped: int) -> None: ...

    def save_health(self, drain_id: int, *, error: str | None) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    first: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.first * 2 ** max(failures - 1, 0)))


class _Drain:
    def __init__(self, config: DrainConfig, cursor: LogCursor) -> None:
        self.config = config
        self.cursor = cursor
        self.task: asyncio.Task[None] | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.failing_since: float | None = None
        self.last_error: str | None = None


class DrainManager:
    def __init__(
        self, *, logs_dir: Path | Callable[[str], Path], holds_dir: Path, store: CursorStore,
        record_event: Callable[..., Any],
        sink_factory: Callable[[DrainConfig], Sink] | None = None, retry: RetryPolicy = RetryPolicy(),
        poll_interval: float = POLL_INTERVAL, watch_interval: float = WATCH_INTERVAL,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # a project's log folder: `logs_dir / project`, or where its engine's LogSource keeps them
        self._log_dir: Callable[[str], Path] = (lambda project: logs_dir / project) if isinstance(logs_dir, Path) \
            else logs_dir
        self._holds_dir = holds_dir
        self._store = store
        self._record_event = record_event
        self._sink_factory = sink_factory or (lambda c: open_sink(c.parsed, project=c.project))
        self._retry = retry
        self._poll = poll_interval
        self._watch_interval = watch_interval
        self._max_held = max_held_bytes
        self._clock = clock
        self._drains: dict[int, _Drain] = {}

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, config: DrainConfig, *, from_now: bool = False) -> None:
        """Run a drain: a new one (`from_now`) begins after the lines already written; a known one resumes
        from its saved cursors."""
        await self.stop(config.id)
        positions = {key: Position(*value) for key, value in self._store.load_positions(config.id).items()}
        cursor = LogCursor(project_dir=self._log_dir(config.project), holds_dir=self.holds(config.id),
                           service=config.service, positions=positions, max_held_bytes=self._max_held)
        if from_now:
            start = await asyncio.to_thread(cursor.start_at_end)
            self._store.save_progress(config.id, positions={k: (p.inode, p.offset) for k, p in start.items()},
                                      sent=0, retried=0, dropped=0)
        drain = self._drains[config.id] = _Drain(config, cursor)
        drain.failing_since, drain.last_error = config.failing_since, config.last_error
        drain.task = asyncio.create_task(self._run(drain), name=f"drain-{config.id}")
        drain.watcher = asyncio.create_task(self._watch(drain), name=f"drain-{config.id}-watch")

    async def stop(self, drain_id: int, *, forget: bool = False) -> None:
        """Stop a drain; `forget` also lets go of the log files it held (the drain was removed)."""
        drain = self._drains.pop(drain_id, None)
        for task in (drain.task, drain.watcher) if drain is not None else ():
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if drain is not None:
            await asyncio.to_thread(drain.cursor.close, forget=forget)
        elif forget:
            cursor = LogCursor(project_dir=self._log_dir("-"), holds_dir=self.holds(drain_id), service=None,
                               positions={})
            await asyncio.to_thread(cursor.close, forget=True)

    async def close(self) -> None:
        for drain_id in list(self._drains):
            await self.stop(drain_id)

    def holds(self, drain_id: int) -> Path:
        return self._holds_dir / str(drain_id)

    # -- what the API asks -------------------------------------------------------------------------------

    async def behind(self, drain_id: int) -> int | None:
        drain = self._drains.get(drain_id)
        return None if drain is None else await asyncio.to_thread(drain.cursor.behind)

    def health(self, drain_id: int) -> tuple[float | None, str | None]:
        drain = self._drains.get(drain_id)
        return (None, None) if drain is None else (drain.failing_since, drain.last_error)

    async def test(self, config: DrainConfig, *, message: str) -> None:
        """Send one message now, on a connection of its own; raises DeliveryError when it is not acknowledged."""
        sink = self._sink_factory(config)
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._clock())) + ".000000Z"
        line = f"{at} stdout F {message}\n".encode()
        try:
            payload = sink.encode([Chunk("stackblaze", 0, 0, 0, line, 1)])
            await asyncio.wait_for(sink.deliver(payload, lines=1), TEST_TIMEOUT)
        except TimeoutError:
            raise DeliveryError(f"{config.masked}: no acknowledgement within {TEST_TIMEOUT:g}s") from None
        finally:
            await sink.close()

    # -- the drain's task --------------------------------------------------------------------------------

    async def _run(self, drain: _Drain) -> None:
        sink: Sink | None = None
        wake = LogWatch.subscribe()  # an idle drain sleeps until its log files change (inotify)
        try:
            sink = await self._open(drain)
            while True:
                wake.event.clear()  # before the read: a line written during it wakes the next wait
                wake.watch(watched_dirs(self._log_dir(drain.config.project), drain.config.service))
                batch = await asyncio.to_thread(drain.cursor.next_batch, sink.max_batch_bytes)
                if batch.empty:
                    await wake.wait(poll=self._poll)
                    continue
                if batch.chunks:
                    payload = await asyncio.to_thread(sink.encode, batch.chunks)
                    await self._deliver(drain, sink, payload, batch)
                await self._commit(drain, batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not take the daemon down; the drain stops and says so
            log.exception("drain %d stopped", drain.config.id)
            self._event(drain, "drain-failed", f"drain {drain.config.id} stopped on an internal error "
                        "(see the daemon log); restart the daemon to resume it", {})
        finally:
            wake.close()
            if sink is not None:
                await sink.close()

    async def _watch(self, drain: _Drain) -> None:
        while True:
            await asyncio.sleep(self._watch_interval)
            try:
                await asyncio.to_thread(drain.cursor.watch)
            except OSError as exc:  # a transient filesystem error: the next look may work
                log.warning("drain %d: cannot look at the log files: %s", drain.config.id, exc)

    async def _open(self, drain: _Drain) -> Sink:
        """The drain's sink; a URL that cannot be used yet (say, its ?ca= file is gone) is a failure to retry."""
        failures = 0
        while True:
            try:
                sink = self._sink_factory(drain.config)
            except (OSError, ValueError, StackblazeError) as exc:
                failures += 1
                await self._failed(drain, f"{drain.config.masked}: {exc}", failures)
                continue
            return sink

    async def _deliver(self, drain: _Drain, sink: Sink, payload: bytes, batch: Batch) -> None:
        failures = 0
        while True:
            try:
                await sink.deliver(payload, lines=batch.lines)
            except DeliveryError as exc:
                failures += 1
                await self._failed(drain, str(exc), failures)
                self._store.save_progress(drain.config.id, positions={}, sent=0, retried=batch.lines, dropped=0)
                continue
            self._recovered(drain)
            return

    async def _failed(self, drain: _Drain, error: str, failures: int) -> None:
        """Say it once (an event when a working drain starts failing), keep the last error, back off."""
        if drain.failing_since is None:
            drain.failing_since = self._clock()
            self._event(drain, "drain-failed", f"drain {drain.config.id} failing: {error}; retrying",
                        {"error": error, "url": drain.config.masked})
        drain.last_error = error
        self._store.save_health(drain.config.id, error=error)
        await asyncio.sleep(self._retry.delay(failures))

    def _recovered(self, drain: _Drain) -> None:
        if drain.failing_since is None:
            return
        down = self._clock() - drain.failing_since
        self._event(drain, "drain-recovered", f"drain {drain.config.id} recovered after {down:.1f}s",
                    {"url": drain.config.masked, "failed_for": round(down, 3), "last_error": drain.last_error})
        drain.failing_since = None
        drain.last_error = None
        self._store.save_health(drain.config.id, error=None)

    async def _commit(self, drain: _Drain, batch: Batch) -> None:
        positions: dict[Key, tuple[int, int]] = {k: (p.inode, p.offset) for k, p in batch.positions.items()}
        self._store.save_progress(drain.config.id, positions=positions, sent=batch.lines, retried=0,
                                  dropped=batch.dropped)
        await asyncio.to_thread(drain.cursor.commit, batch)  # it may wait for `behind` counting a backlog
        for loss in batch.losses:
            counted = f"{loss.lines} line(s)" if loss.lines is not None else "an unknown number of lines"
            self._event(drain, "drain-dropped",
                        f"drain {drain.config.id}: {counted} of {loss.service}.{loss.replica} dropped: {loss.reason}",
                        {"service": loss.service, "replica": loss.replica, "lines": loss.lines,
                         "reason": loss.reason})

    def _event(self, drain: _Drain, kind: str, message: str, details: dict[str, Any]) -> None:
        try:
            self._record_event(project=drain.config.project, service=drain.config.service, kind=kind,
                               message=message, details={"drain": drain.config.id, **details})
        except Exception:  # an event that cannot be written must not stop delivery
            log.exception("could not record %s for drain %d", kind, drain.config.id)
