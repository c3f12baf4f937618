"""The rabbitmq and nats readers against a real rabbitmq-server (management API) and a real nats-server
(JetStream, monitoring port): messages held unacknowledged by a real consumer count as in flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import nats as nats_client
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from stackblaze.engine.autoscale.work import ReadError
from tests.integration.autoscale_readers.brokers import Nats, RabbitMQ, polling


@pytest.fixture
def channel(rabbitmq: RabbitMQ) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbitmq.amqp_port))
    yield connection.channel()
    connection.close()


def test_rabbitmq_ready_and_unacknowledged_messages(rabbitmq: RabbitMQ, channel: BlockingChannel) -> None:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True)
    for _ in range(5):
        channel.basic_publish("", name, b"job", pika.BasicProperties(timestamp=int(time.time()) - 30))
    channel.basic_qos(prefetch_count=2)
    held: list[object] = []
    channel.basic_consume(name, lambda _ch, method, _props, _body: held.append(method), auto_ack=False)
    while len(held) < 2:
        channel.connection.process_data_events(time_limit=0.1)

    with polling("rabbitmq", rabbitmq.url(), name) as poller:
        work = poller.read()  # the counts are the queue totals: live
        assert (work.ready, work.in_flight, work.warnings) == (3, 2, ())
        # The age is the statistics' head_message_timestamp: it waits for their next emission (5 s by default).
        work = poller.until("the oldest job's age", lambda w: w.oldest_age is not None)
    assert (work.ready, work.in_flight, work.warnings) == (3, 2, ())
    assert work.oldest_age is not None and work.oldest_age >= 29  # the publisher's timestamp property


def test_rabbitmq_a_wrong_queue_or_vhost_warns_a_wrong_password_is_a_read_error(rabbitmq: RabbitMQ,
                                                                                channel: BlockingChannel) -> None:
    channel.queue_declare("known")
    with polling("rabbitmq", rabbitmq.url(), "known", "unknown") as poller:
        work = poller.read()  # at once: a queue declared just now is known to the queue totals
    assert work.warnings == (f"rabbitmq queue 'unknown' not found in vhost '/' on http://guest:***@127.0.0.1:"
                             f"{rabbitmq.api_port}/%2F: check names",)

    with polling("rabbitmq", rabbitmq.url(vhost="shop"), "known") as poller:
        assert poller.read().warnings == (f"rabbitmq vhost 'shop' not found on http://guest:***@127.0.0.1:"
                                          f"{rabbitmq.api_port}/shop: none of its queues counted (the url's path is "
                                          "the vhost, %2F for /)",)

    with polling("rabbitmq", rabbitmq.url(password="s3cret-pw"), "known") as poller, \
            pytest.raises(ReadError) as refused:
        poller.read()
    assert "s3cret-pw" not in str(refused.value)
    assert str(refused.value) == (f"cannot read http://guest:***@127.0.0.1:{rabbitmq.api_port}/%2F: HTTP 401: "
                                  "login refused (check the user and password in the url)")


async def held_by_consumer(server: Nats) -> None:
    client = await nats_client.connect(server.client_url)
    stream = client.jetstream()
    await stream.add_stream(name="ORDERS", subjects=["orders.*"])
    for _ in range(5):
        await stream.publish("orders.new", b"order")
    subscription = await stream.pull_subscribe("orders.new", durable="workers")
    assert len(await subscription.fetch(2)) == 2  # delivered, never acknowledged
    await client.close()


def test_nats_pending_and_ack_pending_and_wrong_names(nats: Nats) -> None:
    asyncio.run(held_by_consumer(nats))

    with polling("nats", nats.url, "ORDERS/workers", "ORDERS/workres", "ORDRES/workers") as poller:
        work = poller.read()
    assert (work.ready, work.in_flight, work.total) == (3, 2, 5)
    assert any("'ORDERS/workres': consumer 'workres' not found" in w for w in work.warnings)
    assert any("'ORDRES/workers': stream 'ORDRES' not found" in w for w in work.warnings)
    assert len(work.warnings) == 2


def test_nats_stopped_is_a_read_error(nats: Nats) -> None:
    with polling("nats", nats.url, "ORDERS/workers") as poller:
        poller.read()
        nats.proc.terminate()
        nats.proc.wait(timeout=20)
        with pytest.raises(ReadError, match=f"^cannot read http://127.0.0.1:{nats.monitor_port}: "):
            poller.read()
