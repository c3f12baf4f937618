"""The brokers read over HTTP, one GET per poll: RabbitMQ's management API (which, unlike AMQP, counts the
unacknowledged messages; its queue totals are live, its statistics, read beside them for the oldest job's age,
lag) and NATS's monitoring endpoint (JetStream consumers' pending and ack-pending)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from stackblaze.engine.autoscale.work import QueueWork, ReadError, Work, redact

RABBITMQ_TOTALS = {"disable_stats": "true", "enable_queue_totals": "true",
                   "columns": "name,messages_ready,messages_unacknowledged"}
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
    """Two GETs at once per poll on /api/queues/<vhost> (the url's path is the vhost, %2F or empty for "/"; any
    query, such as an older stackblaze's ?amqp_port=, is ignored):

    - the queue totals (?disable_stats=true&enable_queue_totals=true): messages_ready and
      messages_unacknowledged of every queue, as each queue holds them now (a publish or an ack showed within
      0.13 s, measured on RabbitMQ 3.10), all from one answer, so a message moving between the columns (taken
      by a consumer, requeued by one that died) is counted once. These are the work.
    - the statistics (?columns=...): head_message_timestamp, the oldest job's age. They are refreshed only at
      the broker's next stats emission (5-10 s late with the default collect_statistics_interval of 5 s), so
      the age lags; it may only add a replica or block a scale-down, never decide a scale to 0, so a lag is
      harmless. A failed read of them is a warning, and the counts stand.

    A broker whose totals answer carries no counts (before RabbitMQ 3.8's enable_queue_totals) is counted from
    the statistics' columns instead, with a warning at each such read that they lag and why."""

    kind = "rabbitmq"

    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        super().__init__(url, names, timeout=timeout)
        self.vhost = unquote(urlsplit(url).path.lstrip("/")) or "/"
        self.path = f"/api/queues/{quote(self.vhost, safe='')}"

    async def read(self, now: float) -> Work:
        totals, stats = await asyncio.gather(self.get(self.path, RABBITMQ_TOTALS), self._statistics())
        if totals is None:
            return Work.of((QueueWork(name) for name in self.names),
                           [f"rabbitmq vhost {self.vhost!r} not found on {redact(self.url)}: none of its queues "
                            "counted (the url's path is the vhost, %2F for /)"])
        if not isinstance(totals, list):
            raise ReadError.reading(self.url, "/api/queues did not answer a list of queues")
        live = _by_name(totals)
        lagging: dict[str, dict[str, Any]] = stats if isinstance(stats, dict) else {}
        warnings: list[str] = [] if isinstance(stats, dict) else [stats]
        rows: list[QueueWork] = []
        without_totals: list[str] = []
        for name in self.names:
            queue = live.get(name)
            if queue is None:
                warnings.append(f"rabbitmq queue {name!r} not found in vhost {self.vhost!r} on {redact(self.url)}: "
                                "check names")
                rows.append(QueueWork(name))
                continue
            counted = lagging.get(name, {})
            ready, unacked = _counts(queue)
            if ready is None or unacked is None:
                without_totals.append(name)
                ready, unacked = _counts(counted)
                if ready is None or unacked is None:
                    warnings.append(f"rabbitmq queue {name!r}: no message counts yet (the management plugin reports "
                                    "them every collect_statistics_interval, 5 s by default)")
            stamp = counted.get("head_message_timestamp")  # set only when publishers set the timestamp property
            # A head the statistics still show in a queue with nothing ready now is gone: no age to report.
            age = max(0.0, now - stamp) if isinstance(stamp, int | float) and stamp > 0 and ready else None
            rows.append(QueueWork(name, ready=ready or 0, in_flight=unacked or 0, oldest_age=age))
        if without_totals:
            warnings.insert(0, f"rabbitmq on {redact(self.url)} gave no live totals for queue(s) "
                               f"{', '.join(map(repr, without_totals))} (its management API's enable_queue_totals "
                               "needs RabbitMQ 3.8 or later): counted from its statistics, which lag by its "
                               "collect_statistics_interval (5 s by default); upgrade RabbitMQ for live counts")
        return Work.of(rows, warnings)

    async def _statistics(self) -> dict[str, dict[str, Any]] | str:
        """The statistics' columns by queue name, or the warning of a failed read (the counts come from the
        totals, and the age alone can wait)."""
        try:
            found = await self.get(self.path, {"columns": RABBITMQ_COLUMNS})
        except ReadError as error:
            return f"rabbitmq queues' oldest job's age not read: {error}"
        return _by_name(found) if isinstance(found, list) else {}


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


def _by_name(queues: list[Any]) -> dict[str, dict[str, Any]]:
    return {str(q.get("name")): q for q in queues if isinstance(q, dict)}


def _counts(queue: dict[str, Any]) -> tuple[int | None, int | None]:
    """(messages_ready, messages_unacknowledged), each None where the answer has no count."""
    ready, unacked = queue.get("messages_ready"), queue.get("messages_unacknowledged")
    return (ready if isinstance(ready, int) else None), (unacked if isinstance(unacked, int) else None)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _query(url: str) -> list[tuple[str, str]]:
    query = urlsplit(url).query
    return [(key, unquote(value)) for key, _, value in (item.partition("=") for item in query.split("&") if item)]
