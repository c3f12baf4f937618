"""The rabbitmq reader's counts against a real rabbitmq-server at its default statistics interval (5 s): the
management API's queue totals show a publish, an ack and a requeue at the very next read, while its statistics
(what `GET /api/queues/<vhost>/<name>` and the management UI show) still give the old figure; a broker without
queue totals is counted from its statistics with one warning naming the RabbitMQ version it needs."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from stackblaze.engine.autoscale.work import Work
from tests.integration.autoscale_readers.brokers import RabbitMQ, polling
from tests.integration.conftest import wait_for


@pytest.fixture
def channel(rabbitmq: RabbitMQ) -> Iterator[BlockingChannel]:
    """A channel in confirm mode: each publish returns once the broker has the message in its queue, so a read
    after it is a read after the publish, not a race with the message still on the wire."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.amqp_port))
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    connection.close()


def statistics(rabbitmq: RabbitMQ, name: str) -> tuple[int, int] | None:
    """(ready, unacknowledged) as the management API's statistics show them now (the reader's counts before
    this change), None before their first emission."""
    queue = httpx.get(f"http://127.0.0.1:{rabbitmq.api_port}/api/queues/%2F/{name}", auth=("guest", "guest"),
                      timeout=5).json()
    ready, unacked = queue.get("messages_ready"), queue.get("messages_unacknowledged")
    return (ready, unacked) if isinstance(ready, int) and isinstance(unacked, int) else None


def queue(channel: BlockingChannel) -> str:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True)
    return name


def settled_after(channel: BlockingChannel, name: str) -> None:
    """One round trip to the queue on the channel that acked: the queue has handled the ack before it answers
    (pika sends an ack without waiting for anything)."""
    channel.queue_declare(name, passive=True)


def test_a_publish_counts_at_the_very_next_read(rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    name = queue(channel)
    lagged: list[bool] = []
    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        first = poller.read()  # a queue declared just now is found, not warned about
        assert (first.total, first.warnings) == (0, ())
        for n in range(1, 4):
            channel.basic_publish("", name, b"job")
            published = time.perf_counter()
            work = poller.read()
            seen = (time.perf_counter() - published) * 1000
            shown = statistics(rabbitmq, name)  # after the read: if still old now, it was old at the read
            print(f"\npublish {n}: read {seen:.1f} ms after it: ready {work.ready} (the statistics: {shown})")
            assert (work.ready, work.in_flight, work.warnings) == (n, 0, ())
            lagged.append(shown != (n, 0))
    assert any(lagged), "the statistics showed every publish at once: a reader of them would have passed too"


def test_an_ack_leaves_in_flight_at_the_very_next_read(rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    name = queue(channel)
    for _ in range(5):
        channel.basic_publish("", name, b"job")
    taken = []
    for _ in range(2):
        method, _props, _body = channel.basic_get(name, auto_ack=False)
        taken.append(method)
    lagged: list[bool] = []
    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        work = poller.read()
        assert (work.ready, work.in_flight) == (3, 2)  # taken: in flight at once, and not counted twice
        # The statistics must show the 2 in flight first, or their lag could not be told from a fresh 0.
        wait_for("the statistics to show 2 unacknowledged", lambda: statistics(rabbitmq, name) == (3, 2), 30)
        for n, method in enumerate(taken, 1):
            assert method is not None
            channel.basic_ack(method.delivery_tag)
            settled_after(channel, name)
            acked = time.perf_counter()
            work = poller.read()
            seen = (time.perf_counter() - acked) * 1000
            shown = statistics(rabbitmq, name)
            print(f"\nack {n}: read {seen:.1f} ms after it: {work.ready} ready, {work.in_flight} in flight (the "
                  f"statistics: {shown})")
            assert (work.ready, work.in_flight, work.warnings) == (3, 2 - n, ())
            lagged.append(shown != (3, 2 - n))
    assert any(lagged), "the statistics showed every ack at once: the old reader would have passed too"


def test_a_message_requeued_by_a_consumer_that_died_is_counted_once_and_at_once(
        rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    """A consumer's connection drops with 2 messages unacknowledged (a replica killed in a drain): they go from
    in flight back to ready. Every read counts them once (never 4, never 0), and ready within a second, where
    the statistics take up to two emissions (5-10 s)."""
    name = queue(channel)
    for _ in range(2):
        channel.basic_publish("", name, b"job")
    consumer = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.amqp_port))
    taking = consumer.channel()
    for _ in range(2):
        assert taking.basic_get(name, auto_ack=False)[0] is not None
    wait_for("the statistics to show 2 unacknowledged", lambda: statistics(rabbitmq, name) == (0, 2), 30)

    reads: list[Work] = []
    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        before = poller.read()
        assert (before.ready, before.in_flight) == (0, 2)
        consumer.close()  # the broker requeues both
        closed = time.perf_counter()

        def requeued() -> bool:
            reads.append(poller.read())
            return (reads[-1].ready, reads[-1].in_flight) == (2, 0)

        wait_for("2 ready and 0 unacknowledged", requeued, 20, interval=0.02)
        seen = time.perf_counter() - closed
    print(f"\nrequeue read as 2 ready {seen * 1000:.1f} ms after the consumer closed, {len(reads)} read(s): "
          + ", ".join(f"{w.ready}+{w.in_flight}" for w in reads) + f" (the statistics: {statistics(rabbitmq, name)})")
    assert [w.total for w in reads] == [2] * len(reads)
    assert seen < 1.0


@contextlib.contextmanager
def without_queue_totals(rabbitmq: RabbitMQ) -> Iterator[str]:
    """An HTTP proxy to the real management API that drops `enable_queue_totals` from each query, so the broker
    answers as one from before RabbitMQ 3.8 does (no such parameter, so no counts with disable_stats). A stand-in
    for an older broker, which cannot be installed here (Debian has 3.10). Yields the url to give the reader."""
    api = f"http://127.0.0.1:{rabbitmq.api_port}"

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "enable_queue_totals"])
            answer = httpx.get(f"{api}{parts.path}?{query}", headers={"Authorization": self.headers["Authorization"]},
                               timeout=5)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://guest:guest@127.0.0.1:{server.server_address[1]}/%2F"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_broker_without_queue_totals_is_counted_from_its_statistics_with_one_warning(
        rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    name = queue(channel)
    for _ in range(3):
        channel.basic_publish("", name, b"job")
    assert channel.basic_get(name, auto_ack=False)[0] is not None
    reads: list[Work] = []
    with without_queue_totals(rabbitmq) as url, polling("rabbitmq", url, name) as poller:
        def counted() -> bool:
            reads.append(poller.read())
            return (reads[-1].ready, reads[-1].in_flight) == (2, 1)

        wait_for("2 ready and 1 unacknowledged from the statistics", counted, 30, interval=0.2)
    print(f"\n{len(reads)} read(s) until the statistics showed them: "
          + ", ".join(f"{w.ready}+{w.in_flight}" for w in reads[:5]) + (" ..." if len(reads) > 5 else ""))
    lag = (f"rabbitmq on {url.replace(':guest@', ':***@')} gave no live totals for queue(s) {name!r} (its "
           "management API's enable_queue_totals needs RabbitMQ 3.8 or later): counted from its statistics, which "
           "lag by its collect_statistics_interval (5 s by default); upgrade RabbitMQ for live counts")
    assert reads[-1].warnings == (lag,)
    assert all(w.warnings[0] == lag for w in reads)  # said at every read that counts the lagging way


def test_an_older_url_with_amqp_port_still_reads(rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    """stackblaze used to read AMQP beside the management API, at the url's ?amqp_port=N; such a url in a
    stackblaze.yaml keeps working, the parameter ignored without a word."""
    name = queue(channel)
    channel.basic_publish("", name, b"job")
    with polling("rabbitmq", rabbitmq.url() + "?amqp_port=1", name) as poller:
        work = poller.read()
    assert (work.ready, work.warnings) == (1, ())
