"""Push listeners of the Redis-backed kinds: keyspace notifications on the queue keys (Celery, RQ, dramatiq, a
plain list) and BullMQ's own events stream, `<prefix>:<queue>:events`, read with XREAD BLOCK.

Keyspace notifications are a server setting (`notify-keyspace-events`, off by default) that costs every
client of that server a little: the listener turns them on (adding K and l to what is set) only on the
project's own backing Redis; elsewhere it uses them when the operator has, and otherwise says why it polls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from stackblaze.engine.autoscale.redis_readers import CELERY_PRIORITY_SUFFIXES, _bull_base
from stackblaze.engine.autoscale.wake import NoPush, Push
from stackblaze.engine.autoscale.work import ReadError, redact

NEEDED_FLAGS = "Kl"  # keyspace channels (K) for list commands (l): every kind here enqueues with a list push
PUSH_COMMANDS = frozenset({b"lpush", b"rpush", b"linsert"})  # a pop or a trim adds no work
BLOCK_MS = 10_000  # one XREAD BLOCK; the socket timeout is this plus the connect timeout
# BullMQ events that may mean runnable work: a job in wait (added, prioritized, promoted, retried), a queue
# resumed; `delayed` carries the job's due time, so the loop evaluates at that time.
BULLMQ_NOW = frozenset({b"waiting", b"resumed"})


def queue_keys(kind: str, names: Sequence[str]) -> list[str]:
    """The lists a producer of `kind` pushes a new job onto (redis_readers.py reads the same keys)."""
    if kind == "celery":
        return [name + suffix for name in names for suffix in CELERY_PRIORITY_SUFFIXES]
    if kind == "rq":
        return [f"rq:queue:{name}" for name in names]
    if kind == "dramatiq":
        return [f"dramatiq:{name}" for name in names]
    return list(names)


def _has_flags(flags: str) -> bool:
    return "K" in flags and ("l" in flags or "A" in flags)


def _merged(flags: str) -> str:
    return flags + "".join(flag for flag in NEEDED_FLAGS if flag not in flags)


class KeyspaceListener:
    """SUBSCRIBE to `__keyspace@<db>__:<key>` for each queue key; a list push onto one is a push."""

    def __init__(self, kind: str, url: str, names: Sequence[str], *, may_configure: bool, timeout: float = 5.0
                 ) -> None:
        self.url, self.kind, self.may_configure, self.timeout = url, kind, may_configure, timeout
        db = urlsplit(url).path.strip("/") or "0"
        self.channels = {f"__keyspace@{db}__:{key}": key for key in queue_keys(kind, names)}
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None

    async def subscribe(self) -> list[Push]:
        await self.close()
        self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=self.timeout, socket_keepalive=True)
        try:
            await self._notifications_on(self._client)
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(*self.channels)
        except (RedisError, OSError) as error:
            raise ReadError.reading(self.url, error) from None
        return []

    async def _notifications_on(self, client: aioredis.Redis) -> None:
        where = redact(self.url)
        try:
            found = await client.config_get("notify-keyspace-events")
        except ResponseError as error:  # CONFIG renamed away, or an ACL without +config: a managed Redis
            raise NoPush(f"cannot read notify-keyspace-events on {where} ({error}): woken from 0 by the poll; "
                         "allow CONFIG GET, or use the project's own Redis (type: redis)") from None
        flags = str(found.get("notify-keyspace-events", ""))
        if _has_flags(flags):
            return
        if not self.may_configure:
            raise NoPush(f"keyspace notifications are off on {where} (notify-keyspace-events is {flags!r}): woken "
                         f"from 0 by the poll; for a push, set notify-keyspace-events {_merged(flags)!r} there")
        try:
            await client.config_set("notify-keyspace-events", _merged(flags))
        except ResponseError as error:
            raise NoPush(f"cannot turn on keyspace notifications on {where} ({error}): woken from 0 by the "
                         "poll") from None

    async def next(self) -> Push:
        assert self._pubsub is not None, "subscribe() first"
        try:
            while True:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is None or message.get("type") != "message" or message["data"] not in PUSH_COMMANDS:
                    continue
                channel = message["channel"].decode(errors="replace")
                key = self.channels.get(channel, channel)
                return Push(f"{message['data'].decode()} onto {key!r}")
        except (RedisError, OSError) as error:
            raise ReadError.reading(self.url, error) from None

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (RedisError, OSError):  # a connection that is already gone needs no goodbye
            pass


class BullMQListener:
    """XREAD BLOCK on each queue's events stream from its last entry: `waiting` and `resumed` push now,
    `delayed` at the job's due time. At subscribe, the earliest delayed job of each queue gives a timer too,
    since no event will come when it falls due."""

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout
        self.bases = {_bull_base(name): name for name in names}
        self._ids: dict[str, str] = {}
        self._queued: list[Push] = []  # the rest of one XREAD's answer
        self._client: aioredis.Redis | None = None

    async def subscribe(self) -> list[Push]:
        await self.close()
        self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=self.timeout,
                                               socket_timeout=BLOCK_MS / 1000 + self.timeout, socket_keepalive=True)
        timers = []
        try:
            for base, name in self.bases.items():
                last = await self._client.xrevrange(f"{base}:events", count=1)
                self._ids[f"{base}:events"] = last[0][0].decode() if last else "0-0"
                earliest = await self._client.zrange(f"{base}:delayed", 0, 0, withscores=True)
                if earliest:
                    due = int(earliest[0][1]) // 0x1000 / 1000  # score: due ms × 0x1000 + a counter
                    timers.append(Push(f"bullmq delayed job {earliest[0][0].decode()} due in {name!r}", due_at=due))
        except (RedisError, OSError) as error:
            raise ReadError.reading(self.url, error) from None
        return timers

    async def next(self) -> Push:
        assert self._client is not None, "subscribe() first"
        try:
            while not self._queued:
                answer = await self._client.xread(self._ids, count=100, block=BLOCK_MS)  # type: ignore[arg-type]
                for stream, entries in (answer.items() if isinstance(answer, dict) else answer or []):
                    key = stream.decode()
                    for entry_id, fields in entries:
                        self._ids[key] = entry_id.decode()
                        push = self._push(key, fields)
                        if push is not None:
                            self._queued.append(push)
            return self._queued.pop(0)
        except (RedisError, OSError) as error:
            raise ReadError.reading(self.url, error) from None

    def _push(self, key: str, fields: dict[bytes, bytes]) -> Push | None:
        event = fields.get(b"event", b"")
        name = self.bases.get(key.removesuffix(":events"), key)
        job = fields.get(b"jobId", b"").decode(errors="replace")
        if event in BULLMQ_NOW:
            return Push(f"bullmq {event.decode()} {('job ' + job + ' ') if job else ''}in {name!r}")
        if event == b"delayed":
            try:
                due = int(fields.get(b"delay", b"")) / 1000
            except ValueError:
                due = time.time()
            return Push(f"bullmq delayed job {job} due in {name!r}", due_at=due)
        return None

    async def close(self) -> None:
        client, self._client = self._client, None
        self._queued.clear()
        if client is not None:
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass
