"""`open_reader(queues)`: the reader of a service's `autoscale.queues`, one per queue kind, each reading all
of the service's queues in one round trip per poll."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stackblaze.engine.autoscale.http_readers import NatsReader, RabbitMQReader
from stackblaze.engine.autoscale.redis_readers import (
    BullMQReader,
    CeleryReader,
    DramatiqReader,
    RedisListReader,
    RQReader,
)
from stackblaze.engine.autoscale.work import Work
from stackblaze.spec.autoscale import QueueKind, Queues


class Reader(Protocol):
    async def read(self, now: float) -> Work:
        """The work at wall-clock time `now` (epoch seconds: due times and ages are reckoned from it); raises
        ReadError when the broker cannot be read. A reader is used from one event loop at a time."""
        ...

    async def close(self) -> None: ...


# Each takes (url, names, *, timeout).
READERS: dict[QueueKind, Callable[..., Reader]] = {
    "celery": CeleryReader, "rq": RQReader, "bullmq": BullMQReader, "dramatiq": DramatiqReader,
    "redis-list": RedisListReader, "rabbitmq": RabbitMQReader, "nats": NatsReader,
}


def open_reader(queues: Queues, *, timeout: float = 5.0) -> Reader:
    """A reader of `queues` (its url already expanded). No connection is made until the first read, so a
    broker that is down shows as a ReadError there, not here. `timeout` bounds each read's connect and
    answer, in seconds."""
    if "${{" in queues.url:
        raise ValueError(f"queues.url {queues.url!r} still holds a reference: expand it before opening a reader")
    return READERS[queues.kind](queues.url, queues.names, timeout=timeout)
