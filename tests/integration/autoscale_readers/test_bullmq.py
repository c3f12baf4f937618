"""The bullmq reader against jobs added by the real bullmq (the version examples/bullmq-email locks) on a real
redis-server: wait + prioritized ready, due delayed jobs only, active in flight, a paused queue not counted."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from tests.integration.autoscale_readers.brokers import polling
from tests.tools import need

HOUR_MS = 3_600_000


def bull(bullmq_dir: Path, redis_url: str, *ops: dict[str, object]) -> None:
    port = str(urlsplit(redis_url).port)
    subprocess.run([need("node"), "bullmq_client.js", port, "ops", json.dumps(ops)], cwd=bullmq_dir, check=True,
                   timeout=60)


def bull_worker(bullmq_dir: Path, redis_url: str, queue: str, concurrency: int, release: Path
                ) -> subprocess.Popen[bytes]:
    port = str(urlsplit(redis_url).port)
    return subprocess.Popen([need("node"), "bullmq_client.js", port, "work", queue, str(concurrency), str(release)],
                            cwd=bullmq_dir, start_new_session=True)


def test_waiting_prioritized_and_due_delayed_jobs_count_a_future_one_does_not(bullmq_dir: Path,
                                                                              redis_url: str) -> None:
    bull(bullmq_dir, redis_url,
         {"op": "add", "queue": "email"}, {"op": "add", "queue": "email"},
         {"op": "add", "queue": "email", "opts": {"priority": 3}},
         {"op": "add", "queue": "email", "opts": {"delay": 300}},
         {"op": "add", "queue": "email", "opts": {"delay": HOUR_MS}})
    keys = redis.Redis.from_url(redis_url)
    assert keys.zcard("bull:email:prioritized") == 1 and keys.zcard("bull:email:delayed") == 2  # no worker promotes

    with polling("bullmq", redis_url, "email") as poller:
        work = poller.until("the 300 ms delayed job to be due", lambda w: w.due == 1)
        assert (work.ready, work.due, work.in_flight, work.total) == (3, 1, 0, 4)
        assert work.warnings == ()
        assert work.oldest_age is not None and 0 <= work.oldest_age < 30
        # The hour-delayed job counts once its hour has come (its score decodes to its due time).
        assert poller.read(now=time.time() + 3700).due == 2
        assert poller.read(now=time.time() + 3400).due == 1


def test_a_paused_queue_counts_nothing_ready_and_says_so(bullmq_dir: Path, redis_url: str) -> None:
    bull(bullmq_dir, redis_url, {"op": "pause", "queue": "email"}, {"op": "add", "queue": "email"},
         {"op": "add", "queue": "email", "opts": {"priority": 1}})

    with polling("bullmq", redis_url, "email") as poller:
        work = poller.read()
        assert (work.ready, work.due, work.in_flight) == (0, 0, 0)
        assert any("'email' is paused: its 2 waiting jobs are not counted" in w for w in work.warnings), work.warnings

        bull(bullmq_dir, redis_url, {"op": "resume", "queue": "email"})
        work = poller.read()
        assert (work.ready, work.warnings) == (2, ())


def test_active_jobs_are_in_flight_and_an_idle_known_queue_does_not_warn(
        bullmq_dir: Path, redis_url: str, release: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    bull(bullmq_dir, redis_url, *({"op": "add", "queue": "email"} for _ in range(3)))
    workers.append(bull_worker(bullmq_dir, redis_url, "email", 2, release))

    with polling("bullmq", redis_url, "email") as poller:
        work = poller.until("2 jobs active", lambda w: w.in_flight == 2)
        assert (work.ready, work.in_flight, work.total) == (1, 2, 3)
        release.touch()
        work = poller.until("every job done", lambda w: w.total == 0)
        assert work.warnings == ()  # bull:email:meta outlives the empty lists


def test_a_wrong_name_and_a_wrong_type_warn_in_the_first_read(bullmq_dir: Path, redis_url: str) -> None:
    bull(bullmq_dir, redis_url, {"op": "add", "queue": "email-dispatch"})
    redis.Redis.from_url(redis_url).set("bull:broken:wait", "not a list")

    with polling("bullmq", redis_url, "email-dispatch", "email-dispach", "broken") as poller:
        work = poller.read()
    assert work.ready == 1
    assert any("bullmq queue 'email-dispach' not found" in w and "check names" in w for w in work.warnings)
    assert any("'bull:broken:wait'" in w and "is a string" in w for w in work.warnings)
    assert not any("'email-dispatch'" in w for w in work.warnings)
