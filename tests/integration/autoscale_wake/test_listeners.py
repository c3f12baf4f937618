"""The push listeners against real brokers: keyspace notifications on a real redis-server (used when on, turned on
only where allowed, refused where CONFIG is), BullMQ's events stream as the real bullmq writes it, and a core
subscription to a real nats-server's JetStream subjects."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import nats as nats_client
import pytest
import redis
from rq import Queue

from stackblaze.engine.autoscale.wake import Listener, NoPush, Push, open_listener
from stackblaze.engine.autoscale.work import ReadError
from stackblaze.spec.autoscale import QueueKind, Queues
from tests.integration.autoscale_readers.brokers import Nats
from tests.integration.autoscale_wake.conftest import redis_with
from tests.tools import need


class Listening:
    """One listener on its own event loop, driven from sync test code."""

    def __init__(self, kind: QueueKind, url: str, *names: str, own: bool = False) -> None:
        self.runner = asyncio.Runner()
        self.listener: Listener = open_listener(Queues(kind, url, names), may_configure=own, timeout=2.0)

    def subscribe(self) -> list[Push]:
        return self.runner.run(self.listener.subscribe())

    def next(self, timeout: float = 10.0) -> Push:
        return self.runner.run(asyncio.wait_for(self.listener.next(), timeout))

    def close(self) -> None:
        self.runner.run(self.listener.close())
        self.runner.close()


@pytest.fixture
def listening() -> Iterator[list[Listening]]:
    opened: list[Listening] = []
    yield opened
    for item in opened:
        item.close()


def listen(opened: list[Listening], kind: QueueKind, url: str, *names: str, own: bool = False) -> Listening:
    opened.append(Listening(kind, url, *names, own=own))
    return opened[-1]


def test_keyspace_notifications_off_on_a_foreign_redis_mean_polling_and_say_what_to_set(
        tmp_path: Path, listening: list[Listening]) -> None:
    with redis_with(tmp_path / "r", notify="Ex") as url:
        with pytest.raises(NoPush) as refused:
            listen(listening, "rq", url, "default").subscribe()
        assert "keyspace notifications are off" in str(refused.value)
        assert "notify-keyspace-events 'xEKl'" in str(refused.value)
        # Not ours to change: the server's setting is as its operator left it.
        assert redis.Redis.from_url(url).config_get("notify-keyspace-events")["notify-keyspace-events"] == "xE"


def test_on_the_projects_own_redis_the_listener_turns_them_on_and_an_enqueue_pushes(
        tmp_path: Path, listening: list[Listening]) -> None:
    with redis_with(tmp_path / "r") as url:
        listener = listen(listening, "rq", url, "default", own=True)
        assert listener.subscribe() == []
        conn = redis.Redis.from_url(url)
        assert set(conn.config_get("notify-keyspace-events")["notify-keyspace-events"]) == {"K", "l"}
        conn.rpush("rq:queue:other", "x")  # another queue's key: not listened to
        conn.lpop("rq:queue:other")
        Queue("default", connection=conn).enqueue("tasks.work", 1)
        assert listener.next() == Push("rpush onto 'rq:queue:default'")
        conn.lpop("rq:queue:default")  # a worker's pop adds no work: the next push is the next enqueue
        conn.rpush("rq:queue:default", "y")
        assert listener.next().hint == "rpush onto 'rq:queue:default'"


def test_a_redis_without_config_for_clients_is_polled_and_says_why(tmp_path: Path,
                                                                   listening: list[Listening]) -> None:
    with redis_with(tmp_path / "r", config=False) as url, pytest.raises(NoPush) as refused:
        listen(listening, "celery", url, "celery", own=True).subscribe()
    assert f"cannot read notify-keyspace-events on {url}" in str(refused.value)


def test_celery_priority_lists_and_dramatiq_push_too(tmp_path: Path, listening: list[Listening]) -> None:
    with redis_with(tmp_path / "r", notify="KA") as url:
        celery = listen(listening, "celery", url, "celery")
        dramatiq = listen(listening, "dramatiq", url, "mail")
        celery.subscribe()
        dramatiq.subscribe()
        conn = redis.Redis.from_url(url)
        conn.lpush("celery\x06\x169", "{}")  # kombu's priority-9 list
        assert celery.next().hint == "lpush onto 'celery\\x06\\x169'"
        conn.rpush("dramatiq:mail", "id")
        assert dramatiq.next().hint == "rpush onto 'dramatiq:mail'"


def test_a_lost_redis_is_a_read_error_to_retry(tmp_path: Path, listening: list[Listening]) -> None:
    with redis_with(tmp_path / "r", notify="Kl") as url:
        listener = listen(listening, "redis-list", url, "jobs")
        listener.subscribe()
    with pytest.raises(ReadError):
        listener.next()
    with pytest.raises(ReadError) as lost:
        listener.subscribe()
    assert f"cannot read {url}" in str(lost.value)


def bull(bullmq_dir: Path, url: str, *ops: dict[str, object]) -> None:
    port = str(urlsplit(url).port)
    subprocess.run([need("node"), "bullmq_client.js", port, "ops", json.dumps(ops)], cwd=bullmq_dir, check=True,
                   timeout=60)


def test_bullmq_waiting_jobs_push_now_and_delayed_ones_at_their_due_time(
        tmp_path: Path, bullmq_dir: Path, listening: list[Listening]) -> None:
    with redis_with(tmp_path / "r") as url:  # no keyspace notifications needed: BullMQ writes its own stream
        bull(bullmq_dir, url, {"op": "add", "queue": "email", "opts": {"delay": 3_600_000}})
        listener = listen(listening, "bullmq", url, "email")
        (timer,) = listener.subscribe()  # the delayed job already there: a timer, since no event will say it
        assert timer.due_at is not None and 3590 < timer.due_at - time.time() <= 3600
        before = time.time()
        bull(bullmq_dir, url, {"op": "add", "queue": "email", "opts": {"delay": 60_000}},
             {"op": "add", "queue": "email", "opts": {"priority": 2}}, {"op": "add", "queue": "email"})
        delayed, prioritized, waiting = listener.next(), listener.next(), listener.next()
        assert delayed.hint.startswith("bullmq delayed job") and delayed.due_at is not None
        assert before + 60 <= delayed.due_at <= time.time() + 60
        assert prioritized.hint.startswith("bullmq waiting job") and prioritized.due_at is None
        assert waiting.hint.startswith("bullmq waiting job") and "in 'email'" in waiting.hint
        bull(bullmq_dir, url, {"op": "pause", "queue": "email"}, {"op": "resume", "queue": "email"})
        assert listener.next().hint == "bullmq resumed in 'email'"  # a resumed queue's jobs may run again


def test_a_nats_publish_on_a_streams_subject_pushes_without_consuming_it(
        nats: Nats, listening: list[Listening]) -> None:
    async def publish(count: int) -> int:
        client = await nats_client.connect(nats.client_url)
        js = client.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.*"])
        for n in range(count):
            await js.publish("orders.new", str(n).encode())
        pending = (await js.stream_info("ORDERS")).state.messages
        await client.close()
        return pending

    async def make_stream() -> None:
        client = await nats_client.connect(nats.client_url)
        await client.jetstream().add_stream(name="ORDERS", subjects=["orders.*"])
        await client.close()

    asyncio.run(make_stream())
    listener = listen(listening, "nats", nats.url, "ORDERS/workers")
    assert listener.subscribe() == []
    assert asyncio.run(publish(2)) == 2  # both kept by the stream for its consumer
    push = listener.next()
    assert push.hint == "nats publish on 'orders.new'" and push.again > 0


def test_rabbitmq_has_no_push() -> None:
    with pytest.raises(NoPush, match="rabbitmq offers no push"):
        open_listener(Queues("rabbitmq", "http://guest:guest@127.0.0.1:15672/%2F", ("jobs",)), may_configure=True)
