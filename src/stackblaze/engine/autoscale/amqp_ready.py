"""RabbitMQ's ready counts in real time over AMQP: a passive `queue.declare` per queue answers `message_count`
(the messages ready now) as KEDA's AMQP mode reads it. The management API shows a publish only at its next
stats emission (~3 s measured, whatever collect_statistics_interval), which is too late to wake a worker at 0;
AMQP cannot count unacknowledged messages, so the management API stays the source of in-flight work."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from stackblaze.engine.autoscale.work import ReadError

DEFAULT_PORTS = {"http": 5672, "https": 5671}  # AMQP's, by the management url's scheme (TLS for TLS)
RETRY_AFTER = 30.0  # seconds between connect attempts after a failure: a firewalled port costs a timeout each


def amqp_url(management_url: str) -> str:
    """The AMQP url of the broker whose management API is `management_url`: the same host, user, password and
    vhost (its path), on port 5672 (5671, amqps, under https), or the url's `?amqp_port=N` where AMQP listens
    elsewhere. Raises ValueError naming a bad amqp_port (the caller names the url)."""
    parts = urlsplit(management_url)
    query = dict(parse_qsl(parts.query))
    port = query.get("amqp_port", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"amqp_port {port!r} is not a port (e.g. ?amqp_port=5672)")
    scheme = "amqps" if parts.scheme == "https" else "amqp"
    login = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    vhost = parts.path if parts.path not in ("", "/") else "/%2F"
    return urlunsplit((scheme, f"{login}{host}:{port or DEFAULT_PORTS.get(parts.scheme, 5672)}", vhost, "", ""))


class AmqpReady:
    """One AMQP connection kept across polls, one channel per queue (a passive declare of a missing queue closes
    its channel, not the others'), all declared at once: one round trip per poll. `read()` never raises for the
    broker: what it could not count comes back as a one-line warning naming the AMQP url without its password,
    and the connection is opened again at the next poll (RETRY_AFTER seconds after a failed connect)."""

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.names = tuple(dict.fromkeys(names))
        self.timeout = timeout
        self._clock = clock
        self._connection: AbstractConnection | None = None
        self._channels: dict[str, AbstractChannel] = {}
        self._failed: tuple[float, str] | None = None  # when the last connect failed, and the warning it gave
        self._lock = asyncio.Lock()  # a poll abandoned by its caller may still run when the next one starts

    async def read(self) -> tuple[dict[str, int], str | None]:
        """Ready messages by queue name (a queue the broker does not have is left out), and a warning when
        AMQP could not be read at all."""
        async with self._lock:
            if self._failed is not None:
                at, warning = self._failed
                if self._clock() - at < RETRY_AFTER:
                    return {}, warning
                self._failed = None
            connecting = self._connection is None or self._connection.is_closed
            try:
                return await asyncio.wait_for(self._read(), self.timeout), None
            except asyncio.CancelledError:
                self._drop()
                raise
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as error:
                self._drop()
                warning = self._warning(error)
                if connecting:  # a broker that refuses AMQP is not asked again every poll
                    self._failed = (self._clock(), warning)
                return {}, warning

    async def _read(self) -> dict[str, int]:
        if self._connection is None or self._connection.is_closed:
            self._drop()
            self._connection = await aiormq.connect(self.url)
        counts = await asyncio.gather(*(self._declare(name) for name in self.names))
        return {name: count for name, count in zip(self.names, counts, strict=True) if count is not None}

    async def _declare(self, name: str) -> int | None:
        assert self._connection is not None
        channel = self._channels.get(name)
        if channel is None or channel.is_closed:
            channel = self._channels[name] = await self._connection.channel()
        try:
            answer = await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            del self._channels[name]  # the broker closed it; a queue made later is declared on a new one
            return None
        return int(answer.message_count or 0)

    def _warning(self, error: BaseException) -> str:
        code = error.args[0] if error.args and isinstance(error.args[0], int) else getattr(error, "errno", None)
        if isinstance(error, TimeoutError):
            reason = f"no answer within {self.timeout:g} s"
        elif isinstance(error, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError):
            reason = "login refused (check the user and password in the url)"
        elif code == errno.ECONNREFUSED:
            reason = "connection refused (AMQP listens elsewhere? set ?amqp_port=N in the url)"
        elif isinstance(error, aiormq.exceptions.InvalidFrameError) and "got <Connection.Close" in str(error):
            # aiormq 7.2 drops the reply text of a Connection.Close answered to Connection.Open
            reason = ("the broker closed the connection as it opened (no access to the vhost, or a user or vhost "
                      "connection limit: see the broker's log)")
        else:
            reason = str(error) or type(error).__name__
        cannot = str(ReadError.reading(self.url, reason))
        return f"rabbitmq ready counts from the management API only (they lag by its stats interval): {cannot}"

    def _drop(self) -> None:
        """Forget the connection, closing it in the background (a broken one may not answer a close)."""
        connection, self._connection, self._channels = self._connection, None, {}
        if connection is not None and not connection.is_closed:
            task = asyncio.ensure_future(connection.close())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a close that fails is no news

    async def close(self) -> None:
        connection, self._connection, self._channels = self._connection, None, {}
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(aiormq.exceptions.AMQPError, OSError):
                await asyncio.wait_for(connection.close(), self.timeout)

