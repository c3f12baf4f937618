"""The rabbitmq reader's ready counts over AMQP (a passive queue.declare beside the management API's GET),
against a real rabbitmq-server: a publish counts at the very next read, where the management API shows it only
at its next stats emission; in-flight work stays the management API's; a broker that refuses AMQP is one
warning without the password, and the management figures still count."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from stackblaze.engine.autoscale.work import Work
from tests.integration.autoscale_readers.brokers import RabbitMQ, polling
from tests.integration.conftest import free_port, wait_for


@pytest.fixture
def channel(rabbitmq: RabbitMQ) -> Iterator[BlockingChannel]:
    """A channel in confirm mode: each publish returns once the broker has the message in its queue, so a read
    after it is a read after the publish, not a race with the message still on the wire."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.amqp_port))
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    connection.close()


def management(rabbitmq: RabbitMQ, name: str) -> tuple[int, int] | None:
    """(ready, unacknowledged) as the management API shows them now, None before its first emission."""
    queue = httpx.get(f"http://127.0.0.1:{rabbitmq.api_port}/api/queues/%2F/{name}", auth=("guest", "guest"),
                      timeout=5).json()
    ready, unacked = queue.get("messages_ready"), queue.get("messages_unacknowledged")
    return (ready, unacked) if isinstance(ready, int) and isinstance(unacked, int) else None


def queue(channel: BlockingChannel, rabbitmq: RabbitMQ) -> str:
    """A queue of the test's own, already shown (empty) by the management API."""
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True)
    wait_for("the management API to show the queue", lambda: management(rabbitmq, name) == (0, 0), 20)
    return name


def test_a_publish_counts_at_the_next_read_not_at_the_next_stats_emission(rabbitmq: RabbitMQ,
                                                                           channel: BlockingChannel) -> None:
    name = queue(channel, rabbitmq)
    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        assert poller.read().total == 0
        for _ in range(5):
            channel.basic_publish("", name, b"job")
        published = time.monotonic()
        work = poller.read()
        lagging = management(rabbitmq, name)
        print(f"\nread {(time.monotonic() - published) * 1000:.1f} ms after the publish: ready {work.ready} "
              f"(the management API's at that moment: {lagging})")
        assert (work.ready, work.in_flight, work.warnings) == (5, 0, ())


def test_in_flight_is_the_management_apis_and_a_lagging_snapshot_never_lowers_the_work(
        rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    """AMQP's ready drops the moment a consumer takes messages; the management API's unacknowledged count
    rises only at its next emission. Every read in between must still count all 5 messages."""
    name = queue(channel, rabbitmq)
    for _ in range(5):
        channel.basic_publish("", name, b"job")
    wait_for("the management API to show 5 ready", lambda: management(rabbitmq, name) == (5, 0), 20)
    channel.basic_qos(prefetch_count=2)
    held: list[object] = []
    channel.basic_consume(name, lambda _ch, method, _props, _body: held.append(method), auto_ack=False)
    while len(held) < 2:
        channel.connection.process_data_events(time_limit=0.1)

    reads: list[Work] = []
    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        def settled() -> bool:
            reads.append(poller.read())
            return (reads[-1].ready, reads[-1].in_flight) == (3, 2)

        wait_for("3 ready and 2 unacknowledged", settled, 20, interval=0.05)
    print(f"\n{len(reads)} reads until the management API showed the delivery: "
          + ", ".join(f"{w.ready}+{w.in_flight}" for w in reads[:5]) + (" ..." if len(reads) > 5 else ""))
    assert [w.total for w in reads] == [5] * len(reads) and all(w.warnings == () for w in reads)


def test_a_message_requeued_by_a_consumer_that_died_is_not_counted_twice(rabbitmq: RabbitMQ,
                                                                        channel: BlockingChannel) -> None:
    """A consumer's connection drops with 2 messages unacknowledged (a replica killed in a drain): AMQP shows
    them ready at once, while the management API still shows them unacknowledged until its next emission.
    Counting both would read 4 and scale the drained service straight back up."""
    name = queue(channel, rabbitmq)
    for _ in range(2):
        channel.basic_publish("", name, b"job")
    consumer = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.amqp_port))
    taking = consumer.channel()
    taking.basic_qos(prefetch_count=2)
    held: list[object] = []
    taking.basic_consume(name, lambda _ch, method, _props, _body: held.append(method), auto_ack=False)
    while len(held) < 2:
        consumer.process_data_events(time_limit=0.1)
    wait_for("the management API to show 2 unacknowledged", lambda: management(rabbitmq, name) == (0, 2), 20)
    consumer.close()  # the broker requeues both

    reads: list[Work] = []
    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        def settled() -> bool:
            reads.append(poller.read())
            return (reads[-1].ready, reads[-1].in_flight) == (2, 0)

        wait_for("2 ready and 0 unacknowledged", settled, 20, interval=0.05)
    print(f"\n{len(reads)} reads until the management API showed the requeue: "
          + ", ".join(f"{w.ready}+{w.in_flight}" for w in reads[:5]) + (" ..." if len(reads) > 5 else ""))
    assert len(reads) > 1, "the management API showed the requeue at once: nothing was tested"
    assert [w.total for w in reads] == [2] * len(reads)


def test_amqp_refused_is_one_warning_without_the_password_and_the_management_figures_count(
        rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    name = queue(channel, rabbitmq)
    for _ in range(4):
        channel.basic_publish("", name, b"job")
    closed = free_port()
    url = rabbitmq.url().replace(f"amqp_port={rabbitmq.amqp_port}", f"amqp_port={closed}")
    with polling("rabbitmq", url, name) as poller:
        work = poller.until("the management API's 4 ready", lambda w: w.ready == 4)
    assert work.warnings == (
        "rabbitmq ready counts from the management API only (they lag by its stats interval): cannot read "
        f"amqp://guest:***@127.0.0.1:{closed}/%2F: connection refused (AMQP listens elsewhere? set ?amqp_port=N "
        "in the url)",)


def test_amqp_refused_at_open_says_so_without_the_password(rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    """A user the management API lets in whom AMQP turns away (a connection limit of 0; a wrong password would
    fail the management API's login first, which is a read error)."""
    name = queue(channel, rabbitmq)
    api = f"http://127.0.0.1:{rabbitmq.api_port}/api"
    user = f"watcher-{uuid.uuid4().hex[:6]}"
    for path, body in ((f"users/{user}", {"password": "s3cret-pw", "tags": "management"}),
                       (f"permissions/%2F/{user}", {"configure": ".*", "write": ".*", "read": ".*"}),
                       (f"user-limits/{user}/max-connections", {"value": 0})):
        assert httpx.put(f"{api}/{path}", json=body, auth=("guest", "guest")).status_code in (201, 204), path
    channel.basic_publish("", name, b"job")
    with polling("rabbitmq", rabbitmq.url(user=user, password="s3cret-pw"), name) as poller:
        work = poller.until("the management API's 1 ready", lambda w: w.ready == 1)
    assert work.warnings == (
        "rabbitmq ready counts from the management API only (they lag by its stats interval): cannot read "
        f"amqp://{user}:***@127.0.0.1:{rabbitmq.amqp_port}/%2F: the broker closed the connection as it opened (no "
        "access to the vhost, or a user or vhost connection limit: see the broker's log)",)
