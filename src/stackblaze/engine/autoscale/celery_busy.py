"""Which Celery replicas are busy, from the workers' own heartbeats: no change to the user's start command.

Every Celery worker (5.x) sends a `worker-heartbeat` event every 2 s (`--heartbeat-interval`; none with
`--without-heartbeat`; `-E` is for task events and not needed) on the `celeryev` fanout exchange, from its
main process: `hostname` (the node name, `celery@host` unless `-n`), `pid`, `active` (tasks it runs now),
`processed`, `freq` (the interval) and `timestamp`. On kombu's Redis transport a fanout message is a PUBLISH on
`/<db>.celeryev/worker.heartbeat` (fanout_prefix and fanout_patterns, both on since kombu 4; without patterns
the channel is `/<db>.celeryev`); the payload is kombu's JSON envelope whose `body` is the event as JSON,
base64-encoded (`properties.body_encoding`). A heartbeat is a replica's when its pid is the replica's process
or one of its descendants (busy.owner_of), as for RQ, so several replicas may share the node name `celery@host`.

Run each replica with `-c 1` (and `worker_prefetch_multiplier = 1`): then busy means exactly "runs a task", and
a replica holds no prefetched task that a stop would hand back. A heartbeat says `active` as of when it was
sent, so a task taken in the last interval is not seen yet; and the solo pool sends none while its task runs,
so an idle answer counts only from a heartbeat no older than IDLE_FRESH intervals (a silent solo worker is
unknown, never idle), a busy one up to STALE intervals. Only the JSON event serializer (Celery's default) is
read; kombu's `global_keyprefix` and a renamed `event_exchange` are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stackblaze.engine.autoscale.busy import Busy, owner_of
from stackblaze.engine.autoscale.work import redact

log = logging.getLogger("stackblaze.autoscale")
INTERVAL = 2.0  # Celery's default heartbeat interval (seconds), for a worker not heard from yet
STALE = 3.0  # × its interval: a heartbeat older than this says nothing (busy or not)
IDLE_FRESH = 1.5  # × its interval: an "idle" heartbeat older than this is unknown (the solo pool goes silent)
BACKOFF = (0.5, 30.0)  # real seconds between reconnections to a lost broker: the first and the most
EXCHANGE = "celeryev"
MAX_PIDS = 10_000  # workers remembered as heard from (a bound: a broker shared by many workers over months)


@dataclass(frozen=True)
class Heartbeat:
    type: str  # worker-heartbeat, worker-online, worker-offline
    hostname: str  # the node name, e.g. celery@host
    pid: int  # the worker's main process
    active: int  # tasks it runs now
    processed: int
    freq: float  # its heartbeat interval, seconds
    timestamp: float  # when it was sent (the worker's clock)


def channels(db: int) -> tuple[str, str]:
    """The PSUBSCRIBE patterns for database `db`'s worker events, with and without kombu's fanout_patterns."""
    return f"/{db}.{EXCHANGE}/worker.*", f"/{db}.{EXCHANGE}"


def parse_heartbeat(data: bytes | str) -> Heartbeat | None:
    """The worker event in one PUBLISH payload; None for anything else (a task event, another serializer)."""
    try:
        envelope = json.loads(data)
        if not isinstance(envelope, dict) or "json" not in str(envelope.get("content-type", "")):
            return None
        body: Any = envelope.get("body")
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(str(body), validate=True)
        event = json.loads(body) if isinstance(body, (str, bytes)) else body
        if not isinstance(event, dict) or not str(event.get("type", "")).startswith("worker-"):
            return None
        return Heartbeat(type=str(event["type"]), hostname=str(event.get("hostname", "")), pid=int(event["pid"]),
                         active=int(event.get("active") or 0), processed=int(event.get("processed") or 0),
                         freq=float(event.get("freq") or INTERVAL), timestamp=float(event.get("timestamp") or 0))
    except (ValueError, TypeError, KeyError, binascii.Error):
        return None


class CeleryHeartbeats:
    """The latest heartbeat of each Celery worker on one Redis, kept by a listener task that `follow` starts
    (a url) or stops (None); `busy` maps them to replicas."""

    def __init__(self, *, clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self._clock, self._timeout = clock, timeout
        self._beats: dict[int, tuple[Heartbeat, float]] = {}  # pid -> (latest, when it arrived)
        self._heard: set[int] = set()  # every pid heard from while listening: heartbeats are on for it
        self._task: asyncio.Task[None] | None = None
        self._url: str | None = None
        self.listening_since: float | None = None  # when the current subscription began (None: not listening)
        self._told = False

    def follow(self, url: str | None) -> None:
        if url != self._url:
            self._stop()
        if url is not None and self._task is None:
            self._url = url
            self._task = asyncio.create_task(self._listen(url), name="autoscale celery heartbeats")

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task, self._url, self.listening_since = None, None, None
        self._beats.clear()
        self._heard.clear()

    async def close(self) -> None:
        task = self._task
        self._stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def heard(self, beat: Heartbeat) -> None:
        if beat.type == "worker-offline":
            self._beats.pop(beat.pid, None)
        else:
            self._beats[beat.pid] = (beat, self._clock())
            if len(self._heard) < MAX_PIDS:
                self._heard.add(beat.pid)

    def busy(self, replicas: Mapping[int, int]) -> dict[int, Busy]:
        """Each replica's state from its worker's latest heartbeat (`replicas`: index -> pid); replicas with no
        recent heartbeat are left out (unknown). A replica running several workers is busy if any is."""
        now = self._clock()
        found: dict[int, Busy] = {}
        for pid, (beat, at) in list(self._beats.items()):
            age = now - at
            if age > STALE * beat.freq:
                del self._beats[pid]
                continue
            if beat.active == 0 and age > IDLE_FRESH * beat.freq:
                continue
            index = owner_of(pid, replicas)
            if index is None:
                continue
            before = found[index].jobs if index in found else 0
            jobs = beat.active + (before or 0)
            found[index] = Busy(jobs > 0, jobs, "celery")
        return found

    def silent(self, service: str, replicas: Mapping[int, int], started: Mapping[int, float]) -> str | None:
        """Once (per object): a warning naming the replicas of `service` (index -> pid, and epoch start time)
        that sent no heartbeat in STALE intervals while this listened; None otherwise, or once said."""
        since = self.listening_since
        if self._told or since is None:
            return None
        now = self._clock()
        window = STALE * INTERVAL
        if now - since < window:
            return None
        heard = {owner_of(pid, replicas) for pid in self._heard}
        quiet = sorted(n for n, pid in replicas.items() if n not in heard and now - started.get(n, now) >= window)
        if not quiet:
            return None
        self._told = True
        return (f"no Celery heartbeat from {_names(service, quiet)} in {window:g}s "
                f"on {redact(self._url or '')}: their busy state is unknown, so a scale-down stops the highest "
                "numbers first; drop --without-heartbeat from the start command (or add a busy_probe)")

    async def _listen(self, url: str) -> None:
        delay = BACKOFF[0]
        while True:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=self._timeout, socket_keepalive=True)
            pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
            try:
                db = int(client.connection_pool.connection_kwargs.get("db") or 0)
                await pubsub.psubscribe(*channels(db))
                self.listening_since = self._clock()
                delay = BACKOFF[0]
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is not None and message.get("type") == "pmessage":
                        beat = parse_heartbeat(message["data"])
                        if beat is not None:
                            self.heard(beat)
            except (RedisError, OSError) as error:  # busy data is a preference: unknown meanwhile, never a failure
                log.warning("celery heartbeats on %s: %s; again in %gs", redact(url), error, delay)
            finally:
                self.listening_since = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])


def _names(service: str, indexes: Iterable[int]) -> str:
    return ", ".join(f"{service}.{n}" for n in indexes)
