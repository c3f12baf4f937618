"""Wake from zero by push: `open_listener(queues)` gives a listener that waits for the broker to say work may
have arrived (Redis keyspace notifications, BullMQ's events stream, a core NATS subscription), so that the
control loop evaluates at once instead of at its next poll.

A push is a hint, never a count: the loop still reads the queues and decide() still decides, so a push for a
paused BullMQ queue or a job delayed into the future wakes nothing. A listener is only run while a service is
at 0 replicas (no load on a busy broker); the poll stays, as the backstop for any push that is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stackblaze.spec.autoscale import Queues


@dataclass(frozen=True)
class Push:
    """What a listener heard. `due_at` (epoch seconds): evaluate then rather than now (a BullMQ job delayed
    until that time); `again`: also evaluate this many seconds later (a broker that may deliver the push before
    it has stored the message)."""

    hint: str
    due_at: float | None = None
    again: float = 0.0


class NoPush(Exception):
    """This broker offers no push the loop may use (RabbitMQ; keyspace notifications off and not ours to turn
    on; NATS behind auth or TLS). Permanent for this URL: the loop polls, and says so once. One line."""


class Listener(Protocol):
    async def subscribe(self) -> list[Push]:
        """(Re)connect and subscribe, dropping any earlier connection; answers pushes already known (the next
        delayed job's due time). Raises NoPush, or ReadError when the broker cannot be reached (retry)."""
        ...

    async def next(self) -> Push:
        """The next push; raises ReadError when the connection is lost."""
        ...

    async def close(self) -> None: ...


def open_listener(queues: Queues, *, may_configure: bool, timeout: float = 5.0) -> Listener:
    """A listener for `queues` (url expanded). `may_configure`: the Redis is the project's own backing service,
    so the listener may turn keyspace notifications on (CONFIG SET); on any other Redis it only uses them when
    they are on already. Raises NoPush for a kind without push (rabbitmq)."""
    # Imported here: each family pulls its own client library, and the loop imports this module always.
    if queues.kind == "rabbitmq":
        raise NoPush("rabbitmq offers no push to a client that must not consume (the management API is polled)")
    if queues.kind == "nats":
        from stackblaze.engine.autoscale.wake_nats import NatsListener

        return NatsListener(queues.url, queues.names, timeout=timeout)
    from stackblaze.engine.autoscale.wake_redis import BullMQListener, KeyspaceListener

    if queues.kind == "bullmq":
        return BullMQListener(queues.url, queues.names, timeout=timeout)
    return KeyspaceListener(queues.kind, queues.url, queues.names, may_configure=may_configure, timeout=timeout)
