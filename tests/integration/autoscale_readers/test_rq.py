"""The rq reader against jobs enqueued by the real RQ on a real redis-server, and a real `rq worker` holding
one: the queue list, due scheduled jobs only, the StartedJobRegistry, the oldest job's age."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path

import redis
from rq import Queue

from tests.integration.autoscale_readers.brokers import polling
from tests.integration.autoscale_readers.conftest import python_worker


def queue(redis_url: str, name: str = "jobs") -> Queue:
    return Queue(name, connection=redis.Redis.from_url(redis_url))


def test_ready_and_due_scheduled_jobs_count_a_future_one_does_not(redis_url: str) -> None:
    jobs = queue(redis_url)
    jobs.enqueue("tasks.block")
    jobs.enqueue("tasks.block")
    jobs.enqueue_in(timedelta(seconds=1), "tasks.block")
    jobs.enqueue_in(timedelta(hours=1), "tasks.block")

    with polling("rq", redis_url, "jobs") as poller:
        work = poller.until("the job scheduled in 1 s to be due", lambda w: w.due == 1)
        assert (work.ready, work.due, work.in_flight, work.warnings) == (2, 1, 0, ())
        assert poller.read(now=time.time() + 3700).due == 2
        # The oldest job's age comes from its enqueued_at (UTC): read 100 s later, it is about 100 s old.
        later = poller.read(now=time.time() + 100)
        assert later.oldest_age is not None and 99 <= later.oldest_age <= 130


def test_a_started_job_is_in_flight_and_an_idle_known_queue_does_not_warn(
        redis_url: str, tmp_path: Path, release: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    jobs = queue(redis_url)
    jobs.enqueue("tasks.block")
    jobs.enqueue("tasks.block")
    workers.append(python_worker(tmp_path, release, "rq.cli", "worker", "--url", redis_url, "jobs"))

    with polling("rq", redis_url, "jobs") as poller:
        work = poller.until("the worker to start one job", lambda w: w.in_flight == 1, timeout=30)
        assert (work.ready, work.in_flight, work.total) == (1, 1, 2)
        release.touch()
        work = poller.until("every job done", lambda w: w.total == 0, timeout=30)
        assert work.warnings == ()  # rq:queues still names rq:queue:jobs


def test_a_wrong_name_and_a_wrong_type_warn_in_the_first_read(redis_url: str) -> None:
    queue(redis_url).enqueue("tasks.block")
    redis.Redis.from_url(redis_url).set("rq:wip:broken", "not a zset")

    with polling("rq", redis_url, "jobs", "jbos", "broken") as poller:
        work = poller.read()
    assert work.ready == 1
    assert any("rq queue 'jbos' not found" in w and "check names" in w for w in work.warnings)
    assert any("'rq:wip:broken'" in w and "is a string" in w for w in work.warnings)
    assert not any("'jobs'" in w for w in work.warnings)


def test_the_keys_read_are_the_pinned_rqs_own() -> None:
    """The reader's keys are RQ's own key templates (a bump of the pin that moved them fails here)."""
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    assert StartedJobRegistry.key_template.format("q") == "rq:wip:q"
    assert ScheduledJobRegistry.key_template.format("q") == "rq:scheduled:q"
    assert Queue.redis_queue_namespace_prefix + "q" == "rq:queue:q" and Queue.redis_queues_keys == "rq:queues"
