"""The brokers read over HTTP, one GET per poll: RabbitMQ's management API (which, unlike AMQP, counts the
unacknowledged messages; AMQP's ready counts, which do not lag, are read beside it) and NATS's monitoring
endpoint (JetStream consumers' pending and ack-pending)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from stackblaze.engine.autoscale.amqp_ready import AmqpReady, amqp_url
from stackblaze.engine.autoscale.work import QueueWork, ReadError, Work, redact

RABBITMQ_COLUMNS = "name,messages_ready,messages_unacknowledged,head_message_timestamp"


class HttpReader:
    """A GET of one JSON document per poll; anything but a JSON answer is a ReadError naming the URL."""

    kind = ""

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        self.url = url
        self.names = tuple(names)
        parts = urlsplit(url)
        auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
        self.base = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], path="", query="",
                                              fragment=""))
        self._client = httpx.AsyncClient(auth=auth, timeout=timeout)

    async def get(self, path: str, params: dict[str, str]) -> Any:
        try:
            answer = await self._client.get(self.base + path, params=params)
        except httpx.HTTPError as error:
            raise ReadError.reading(self.url, error) from None
        if answer.status_code == 404:
            return None
        if answer.status_code in (401, 403):
            raise ReadError.reading(self.url, f"HTTP {answer.status_code}: login refused (check the user and "
                                              "password in the url)")
        if answer.status_code != 200:
            raise ReadError.reading(self.url, f"HTTP {answer.status_code} from {path}")
        try:
            return answer.json()
        except ValueError:
            raise ReadError.reading(self.url, f"{path} did not answer JSON") from None

    async def close(self) -> None:
        await self._client.aclose()


class RabbitMQReader(HttpReader):
    """Two reads at once per poll: GET /api/queues/<vhost>?columns=... (messages_ready and
    messages_unacknowledged per queue; the url's path is the vhost, %2F or empty for "/") and, over AMQP, a
    passive queue.declare per queue (amqp_ready.py), whose ready count is the broker's own at that instant.
    The management plugin shows a publish only at its next stats emission (~3 s measured on RabbitMQ 3.10, even
    with collect_statistics_interval 100), too late to wake a worker at 0 within a poll; AMQP cannot count the
    unacknowledged, so in_flight stays the management API's. The work of a queue is the larger of the two
    readings, the management API's ready + unacknowledged (one consistent older snapshot: a message taken by a
    consumer since shows in neither column yet, so it must not be lowered by AMQP's ready) and AMQP's ready
    alone (a message published since): ready = max(management ready, AMQP ready - management unacknowledged).
    Adding AMQP's ready to the lagging unacknowledged instead would count a message requeued since (a consumer
    killed in a drain) twice, and scale a drained service straight back up. AMQP that cannot be read is a
    warning, and the management figures are counted alone."""

    kind = "rabbitmq"

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        super().__init__(url, names, timeout=timeout)
        self.vhost = unquote(urlsplit(url).path.lstrip("/")) or "/"
        self.amqp = AmqpReady(amqp_url(url), self.names, timeout=timeout)

    async def read(self, now: float) -> Work:
        live, found = await asyncio.gather(
            self.amqp.read(), self.get(f"/api/queues/{quote(self.vhost, safe='')}", {"columns": RABBITMQ_COLUMNS}))
        amqp_ready, amqp_warning = live
        if found is None:
            return Work.of((QueueWork(name) for name in self.names),
                           [f"rabbitmq vhost {self.vhost!r} not found on {redact(self.url)}: none of its queues "
                            "counted (the url's path is the vhost, %2F for /)"])
        if not isinstance(found, list):
            raise ReadError.reading(self.url, "/api/queues did not answer a list of queues")
        queues = {q.get("name"): q for q in found if isinstance(q, dict)}
        warnings: list[str] = [amqp_warning] if amqp_warning else []
        rows = []
        for name in self.names:
            queue = queues.get(name)
            if queue is None:
                if name in amqp_ready:  # declared since the management API's last emission
                    rows.append(QueueWork(name, ready=amqp_ready[name]))
                    continue
                warnings.append(f"rabbitmq queue {name!r} not found in vhost {self.vhost!r} on {redact(self.url)}: "
                                "check names")
                rows.append(QueueWork(name))
                continue
            ready, unacked = queue.get("messages_ready"), queue.get("messages_unacknowledged")
            if not isinstance(ready, int) or not isinstance(unacked, int):
                warnings.append(f"rabbitmq queue {name!r}: no message counts yet (the management plugin reports "
                                "them every collect_statistics_interval, 5 s by default)")
            stamp = queue.get("head_message_timestamp")  # set only when publishers set the timestamp property
            age = max(0.0, now - stamp) if isinstance(stamp, int | float) and stamp > 0 else None
            ready, unacked = (ready if isinstance(ready, int) else 0), (unacked if isinstance(unacked, int) else 0)
            rows.append(QueueWork(name, ready=max(ready, amqp_ready.get(name, 0) - unacked), in_flight=unacked,
                                  oldest_age=age))
        return Work.of(rows, warnings)

    async def close(self) -> None:
        await self.amqp.close()
        await super().close()


class NatsReader(HttpReader):
    """GET /jsz?consumers=true on the monitoring port: per STREAM/CONSUMER, num_pending (not yet delivered)
    is ready and num_ack_pending (delivered, not acknowledged) in flight, as KEDA's nats-jetstream scaler
    counts them. A url query such as ?acc=ACCOUNT is passed on; without one every account is searched."""

    kind = "nats"

    async def read(self, now: float) -> Work:
        params = {"consumers": "true", **dict(_query(self.url))}
        found = await self.get("/jsz", params)
        if not isinstance(found, dict):
            raise ReadError.reading(self.url, "/jsz did not answer a JetStream report (is JetStream enabled?)")
        consumers: dict[str, dict[str, dict[str, Any]]] = {}
        for account in found.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                by_name = consumers.setdefault(str(stream.get("name")), {})
                for consumer in stream.get("consumer_detail") or []:
                    by_name.setdefault(str(consumer.get("name")), consumer)
        warnings: list[str] = []
        rows = []
        for name in self.names:
            stream, _, durable = name.partition("/")
            consumer = consumers.get(stream, {}).get(durable)
            if consumer is None:
                what = f"consumer {durable!r}" if stream in consumers else f"stream {stream!r}"
                warnings.append(f"nats queue {name!r}: {what} not found on {redact(self.url)}: check names "
                                "(STREAM/CONSUMER)")
                rows.append(QueueWork(name))
                continue
            rows.append(QueueWork(name, ready=_int(consumer.get("num_pending")),
                                  in_flight=_int(consumer.get("num_ack_pending"))))
        return Work.of(rows, warnings)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _query(url: str) -> list[tuple[str, str]]:
    query = urlsplit(url).query
    return [(key, unquote(value)) for key, _, value in (item.partition("=") for item in query.split("&") if item)]
