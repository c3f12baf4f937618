"""The Redis-backed queue kinds (Celery's kombu transport, RQ, BullMQ, dramatiq, a plain list), each read with
the keys its library writes, all of a service's queues in one round trip (redis_probe.py).

Redis deletes an empty list, so a missing queue key alone is no error; each kind has a key that outlives an
empty queue (a binding, a registry entry, a meta hash) and a queue with none of them is reported as unknown.
Where the library keeps no such key (dramatiq, a plain list), a name never seen by this reader is.
Keys and scores were checked against the libraries' own writes: tests/integration/autoscale_readers/.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from stackblaze.engine.autoscale.redis_probe import DUE_SCAN_CAP, Answer, Op, RedisProbe
from stackblaze.engine.autoscale.work import QueueWork, Work, redact

# kombu's Redis transport: PRIORITY_STEPS [0, 3, 6, 9], sep "\x06\x16"; priority 0 is the bare queue name.
CELERY_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
CELERY_UNACKED = "unacked"  # kombu's default unacked_key: one hash per database, for all queues
BULLMQ_PREFIX = "bull"
BULLMQ_DELAY_SHIFT = 0x1000  # a delayed job's score is its due time in ms × 0x1000 plus a 12-bit counter


# The types each probe op reads (as the script's `want`); "exists" takes any type.
WANT = {"llen": ("list",), "zcard": ("zset",), "zcount": ("zset",), "hlen": ("hash",), "hget": ("hash",),
        "scard": ("set",), "sismember": ("set",), "head": ("list", "zset"), "json_head": ("list",),
        "due_json": ("hash",)}


class RedisReader:
    """Reads one kind's queues; subclasses say which ops to run per queue and what the answers mean."""

    kind: ClassVar[str]
    shared_ops: ClassVar[tuple[Op, ...]] = ()  # read once per poll, not per queue

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        self.url = url
        self.names = tuple(names)
        self._probe = RedisProbe(url, timeout=timeout)

    async def read(self, now: float) -> Work:
        plans = [self.ops(name, now) for name in self.names]
        answers = await self._probe.run([*self.shared_ops, *(op for plan in plans for op in plan)])
        shared, at = answers[:len(self.shared_ops)], len(self.shared_ops)
        warnings: list[str] = []
        rows = []
        for name, plan in zip(self.names, plans, strict=True):
            got = answers[at:at + len(plan)]
            at += len(plan)
            for op, answer in zip(plan, got, strict=True):
                if not answer.missing and answer.type not in WANT.get(op.op, (answer.type,)):
                    warnings.append(self.wrong_type(name, op.key, answer.type))
            rows.append(self.interpret(name, got, now, warnings))
        return self.total(rows, shared, warnings)

    def ops(self, name: str, now: float) -> list[Op]:
        raise NotImplementedError

    def interpret(self, name: str, got: list[Answer], now: float, warnings: list[str]) -> QueueWork:
        raise NotImplementedError

    def total(self, rows: list[QueueWork], shared: list[Answer], warnings: list[str]) -> Work:
        return Work.of(rows, warnings)

    def wrong_type(self, name: str, key: str, found: str) -> str:
        return (f"{self.kind} queue {name!r}: key {key!r} on {redact(self.url)} is a {found}, not what "
                f"{self.kind} writes there (not counted): check names and that nothing else uses that key")

    def unknown(self, name: str, why: str) -> str:
        return f"{self.kind} queue {name!r} not found on {redact(self.url)} ({why}): check names"

    async def close(self) -> None:
        await self._probe.close()


def _age(now: float, since: float | None) -> float | None:
    return None if since is None or not math.isfinite(since) else max(0.0, now - since)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


class CeleryReader(RedisReader):
    """kombu: LPUSH onto the queue's list (and its three priority lists), BRPOP by workers, which keep every
    delivered message in the `unacked` hash until acknowledged (prefetched, ETA and running tasks alike).
    Messages carry no enqueue time, so there is no oldest age."""

    kind = "celery"
    shared_ops = (Op("hlen", CELERY_UNACKED),)

    def ops(self, name: str, now: float) -> list[Op]:
        return [*(Op("llen", name + suffix) for suffix in CELERY_PRIORITY_SUFFIXES),
                Op("exists", f"_kombu.binding.{name}")]

    def interpret(self, name: str, got: list[Answer], now: float, warnings: list[str]) -> QueueWork:
        if all(answer.missing for answer in got):
            warnings.append(self.unknown(name, f"no list {name!r} and no _kombu.binding.{name}: nothing was "
                                               "ever sent to it and no worker consumes it"))
        return QueueWork(name, ready=sum(answer.count() for answer in got[:4]))

    def total(self, rows: list[QueueWork], shared: list[Answer], warnings: list[str]) -> Work:
        (unacked,) = shared
        if not unacked.missing and unacked.type != "hash":
            warnings.append(f"celery: key {CELERY_UNACKED!r} on {redact(self.url)} is a {unacked.type}, not kombu's "
                            "hash of unacknowledged messages (in flight not counted): check the url's database")
        return Work.of(rows, warnings, shared_in_flight=unacked.count())


class RQReader(RedisReader):
    """RQ 2.x and 3.x: RPUSH onto rq:queue:<q>, LPOP/BLMOVE by workers (the oldest is at index 0);
    rq:scheduled:<q> scored by run time in epoch seconds, moved only by a worker's scheduler; the
    StartedJobRegistry rq:wip:<q>; rq:queues, the set of every queue ever enqueued to."""

    kind = "rq"

    def ops(self, name: str, now: float) -> list[Op]:
        return [Op("llen", f"rq:queue:{name}"), Op("zcount", f"rq:scheduled:{name}", ("-inf", math.floor(now))),
                Op("zcard", f"rq:wip:{name}"), Op("sismember", "rq:queues", (f"rq:queue:{name}",)),
                Op("head", f"rq:queue:{name}", (0, "rq:job:", "", "enqueued_at"))]

    def interpret(self, name: str, got: list[Answer], now: float, warnings: list[str]) -> QueueWork:
        ready, due, wip, known, head = got
        if not known.count() and ready.missing and due.missing and wip.missing:
            warnings.append(self.unknown(name, f"rq:queues has no rq:queue:{name}: nothing was ever enqueued to it"))
        return QueueWork(name, ready=ready.count(), due=due.count(), in_flight=wip.count(),
                         oldest_age=_age(now, _iso_seconds(_field(head, 0))))


def _field(answer: Answer, index: int) -> str | None:
    values = answer.value if isinstance(answer.value, list) else []
    value = values[index] if index < len(values) else None
    return value.decode(errors="replace") if isinstance(value, bytes) else None


def _iso_seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:  # RQ writes UTC: with a Z in 2.x and 3.x, naive in older releases
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class BullMQReader(RedisReader):
    """BullMQ 5: jobs wait in <prefix>:<q>:wait (LPUSH, taken from the tail) or, with a priority, in the
    prioritized zset; delayed jobs in the delayed zset until a worker promotes them; running ones in active.
    A paused queue (meta.paused) runs nothing: its waiting jobs (moved to the paused list by 5.x) are not
    counted. A name "prefix:queue" reads a queue under another prefix than "bull"."""

    kind = "bullmq"

    def ops(self, name: str, now: float) -> list[Op]:
        base = _bull_base(name)
        due_below = math.floor(now * 1000) * BULLMQ_DELAY_SHIFT + BULLMQ_DELAY_SHIFT - 1
        return [Op("llen", f"{base}:wait"), Op("zcard", f"{base}:prioritized"),
                Op("zcount", f"{base}:delayed", ("-inf", due_below)), Op("llen", f"{base}:active"),
                Op("hget", f"{base}:meta", ("paused",)), Op("llen", f"{base}:paused"), Op("exists", f"{base}:id"),
                Op("head", f"{base}:wait", (-1, f"{base}:", "", "timestamp", "delay"))]

    def interpret(self, name: str, got: list[Answer], now: float, warnings: list[str]) -> QueueWork:
        wait, prioritized, due, active, paused, paused_list, job_id, head = got
        if paused.missing and job_id.missing:
            base = _bull_base(name)
            warnings.append(self.unknown(name, f"no {base}:meta and no {base}:id: no job was ever added to it"))
        if paused.text() in ("1", "true"):
            held = wait.count() + prioritized.count() + paused_list.count() + due.count()
            warnings.append(f"bullmq queue {name!r} is paused: its {held} waiting jobs are not counted "
                            "(resume it to run them)")
            return QueueWork(name, in_flight=active.count())
        created, delay = _number(_field(head, 0)), _number(_field(head, 1)) or 0.0
        since = None if created is None else (created + delay) / 1000
        return QueueWork(name, ready=wait.count() + prioritized.count() + paused_list.count(), due=due.count(),
                         in_flight=active.count(), oldest_age=_age(now, since))


def _bull_base(name: str) -> str:
    prefix, _, queue = name.rpartition(":")
    return f"{prefix or BULLMQ_PREFIX}:{queue}"


class DramatiqReader(RedisReader):
    """dramatiq's RedisBroker (namespace "dramatiq"): message ids RPUSHed onto dramatiq:<q> (fetched from the
    head), bodies in dramatiq:<q>.msgs until acknowledged; delayed messages in dramatiq:<q>.DQ(.msgs) with
    options.eta in ms. dramatiq keeps no key for an empty queue: a name this reader has never seen a key of
    is reported until it has."""

    kind = "dramatiq"

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        super().__init__(url, names, timeout=timeout)
        self._seen: set[str] = set()

    def ops(self, name: str, now: float) -> list[Op]:
        key = f"dramatiq:{name}"
        return [Op("llen", key), Op("hlen", f"{key}.msgs"), Op("llen", f"{key}.DQ"),
                Op("due_json", f"{key}.DQ.msgs", (math.floor(now * 1000), DUE_SCAN_CAP)),
                Op("json_head", key, (0, f"{key}.msgs"))]

    def interpret(self, name: str, got: list[Answer], now: float, warnings: list[str]) -> QueueWork:
        ready, stored, _delayed, due, head = got
        if not all(answer.missing for answer in got):
            self._seen.add(name)
        elif name not in self._seen:
            warnings.append(self.unknown(name, f"no dramatiq:{name} keys; dramatiq keeps none for an empty queue, "
                                               "so this is an idle queue or a wrong name"))
        due_count, scanned = due.value if isinstance(due.value, list) else (0, 0)
        if due_count == -1:
            warnings.append(f"dramatiq queue {name!r}: {scanned} delayed messages, more than the {DUE_SCAN_CAP} "
                            "one poll reads: the due ones among them are not counted")
            due_count = 0
        since = _number(head.text())
        return QueueWork(name, ready=ready.count(), due=int(due_count),
                         in_flight=max(0, stored.count() - ready.count()),
                         oldest_age=_age(now, None if since is None else since / 1000))


class RedisListReader(RedisReader):
    """A plain Redis list: its length is all there is. Work a consumer has popped is invisible, so a replica
    busy with the last job reads as idle."""

    kind = "redis-list"

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        super().__init__(url, names, timeout=timeout)
        self._seen: set[str] = set()

    def ops(self, name: str, now: float) -> list[Op]:
        return [Op("llen", name)]

    def interpret(self, name: str, got: list[Answer], now: float, warnings: list[str]) -> QueueWork:
        (length,) = got
        if not length.missing:
            self._seen.add(name)
        elif name not in self._seen:
            warnings.append(self.unknown(name, f"no list {name!r}; Redis keeps none for an empty list, so this is "
                                               "an idle queue or a wrong name"))
        return QueueWork(name, ready=length.count())

    def total(self, rows: list[QueueWork], shared: list[Answer], warnings: list[str]) -> Work:
        warnings.append(f"redis-list on {redact(self.url)}: jobs a worker has popped are invisible to a plain "
                        "list (in flight counts 0), so a busy replica may be stopped; a library kind counts them")
        return Work.of(rows, warnings)

