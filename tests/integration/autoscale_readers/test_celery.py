"""The celery reader against tasks sent by the real Celery (kombu's Redis transport) on a real redis-server,
and a real Celery worker holding one (acks_late, prefetch 1, as examples/celery-orders runs it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis
from celery import Celery

from tests.integration.autoscale_readers.brokers import polling
from tests.integration.autoscale_readers.conftest import python_worker

WORKER_APP = """
from celery import Celery

app = Celery("tasks", broker=os.environ["BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)
block = app.task(name="tasks.block")(block)
"""


def sender(redis_url: str) -> Celery:
    return Celery("sender", broker=redis_url)


def test_the_queue_and_its_priority_lists_are_ready(redis_url: str) -> None:
    app = sender(redis_url)
    for priority in (None, 9, 7, 5):
        app.send_task("tasks.block", queue="orders", priority=priority)
    keys = {key.decode() for key in redis.Redis.from_url(redis_url).keys("orders*")}
    # kombu rounds a priority down to a step of [0, 3, 6, 9] and keeps one list per step.
    assert keys == {"orders", "orders\x06\x169", "orders\x06\x166", "orders\x06\x163"}

    with polling("celery", redis_url, "orders") as poller:
        work = poller.read()
    assert (work.ready, work.due, work.in_flight, work.warnings) == (4, 0, 0, ())
    assert [(q.name, q.ready) for q in work.queues] == [("orders", 4)]
    assert work.oldest_age is None  # a Celery message carries no enqueue time


def test_a_task_a_worker_holds_is_in_flight_and_an_idle_known_queue_does_not_warn(
        redis_url: str, tmp_path: Path, release: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    app = sender(redis_url)
    for _ in range(3):
        app.send_task("tasks.block", queue="orders")
    workers.append(python_worker(
        tmp_path, release, "celery", "-A", "tasks", "worker", "-P", "solo", "-Q", "orders", "--without-gossip",
        "--without-mingle", "--without-heartbeat", "-l", "warning", extra=WORKER_APP, broker=redis_url))

    with polling("celery", redis_url, "orders") as poller:
        work = poller.until("the worker to hold one task", lambda w: w.in_flight == 1, timeout=30)
        assert (work.ready, work.in_flight, work.total) == (2, 1, 3)
        release.touch()
        work = poller.until("every task done", lambda w: w.total == 0, timeout=30)
        assert work.warnings == ()  # _kombu.binding.orders outlives the empty list


def test_a_wrong_name_and_a_wrong_type_warn_in_the_first_read(redis_url: str) -> None:
    sender(redis_url).send_task("tasks.block", queue="orders")
    redis.Redis.from_url(redis_url).hset("mail", "not", "a list")

    with polling("celery", redis_url, "orders", "ordres", "mail") as poller:
        work = poller.read()
    assert work.ready == 1
    assert any("celery queue 'ordres' not found" in w and "check names" in w for w in work.warnings)
    assert any("key 'mail'" in w and "is a hash" in w for w in work.warnings)
    assert not any("'orders'" in w for w in work.warnings)
