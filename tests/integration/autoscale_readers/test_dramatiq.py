"""The dramatiq reader against messages sent by the real dramatiq (RedisBroker) on a real redis-server, and a
real dramatiq worker holding them: the queue, due delayed messages only, unacknowledged ones in flight."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from tests.integration.autoscale_readers.brokers import polling
from tests.integration.autoscale_readers.conftest import python_worker

WORKER_APP = """
import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["BROKER"]))
block = dramatiq.actor(queue_name="mail")(block)
"""


@pytest.fixture
def send(redis_url: str) -> Iterator[dramatiq.Actor[..., None]]:
    broker = RedisBroker(url=redis_url)
    dramatiq.set_broker(broker)

    def block() -> None:
        """Stands for tasks.block: only its name and queue travel with the message."""

    yield dramatiq.actor(block, queue_name="mail")
    broker.close()


def test_ready_and_due_delayed_messages_count_a_future_one_does_not(
        redis_url: str, send: dramatiq.Actor[..., None]) -> None:
    send.send()
    send.send()
    send.send_with_options(delay=300)
    send.send_with_options(delay=3_600_000)

    with polling("dramatiq", redis_url, "mail") as poller:
        work = poller.until("the 300 ms delayed message to be due", lambda w: w.due == 1)
        assert (work.ready, work.due, work.in_flight, work.warnings) == (2, 1, 0, ())
        assert poller.read(now=time.time() + 3700).due == 2
        later = poller.read(now=time.time() + 100)
        assert later.oldest_age is not None and 99 <= later.oldest_age <= 130


def test_messages_a_worker_holds_are_in_flight(redis_url: str, send: dramatiq.Actor[..., None], tmp_path: Path,
                                               release: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    for _ in range(3):
        send.send()
    workers.append(python_worker(tmp_path, release, "dramatiq", "tasks", "--processes", "1", "--threads", "1",
                                 extra=WORKER_APP, broker=redis_url))

    with polling("dramatiq", redis_url, "mail") as poller:
        # The worker prefetches beyond its one thread: every message it took is unacknowledged, none lost.
        work = poller.until("the worker to take messages", lambda w: w.in_flight >= 1, timeout=30)
        assert work.ready + work.in_flight == 3
        release.touch()
        work = poller.until("every message acknowledged", lambda w: w.total == 0, timeout=30)
        assert work.warnings == ()  # seen by this reader while it had work


def test_a_name_never_seen_warns_until_it_has_keys(redis_url: str, send: dramatiq.Actor[..., None]) -> None:
    with polling("dramatiq", redis_url, "mail", "mial") as poller:
        first = poller.read()
        assert any("dramatiq queue 'mail' not found" in w for w in first.warnings)
        send.send()
        work = poller.read()
    assert work.ready == 1
    assert any("dramatiq queue 'mial' not found" in w and "check names" in w for w in work.warnings)
    assert not any("'mail'" in w for w in work.warnings)
