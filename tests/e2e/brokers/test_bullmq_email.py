"""examples/bullmq-email on stackblaze, against a real redis-server and a real SMTP server: no email is lost while
the worker runs, scales, is redeployed or has a replica killed.

BullMQ guarantees at-least-once: a job whose worker dies is taken again by the stalled-job check once its lock
expires, and may have been sent already. So every test asserts that each of the jobs reached the SMTP server at
least once (its distinct count) and reports duplicates; none is allowed to fail. Every count comes from the SMTP
server or from Redis, never from the workers' logs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from tests.e2e.brokers.apps import DeployedApp, redis_client, run_in_release
from tests.e2e.brokers.conftest import copy_example
from tests.e2e.brokers.smtp_sink import SmtpSink
from tests.integration.conftest import Stackblaze, wait_for
from tests.tools import need

pytestmark = pytest.mark.timeout(300)

JOBS = 1000
QUEUE = "bull:email-dispatch"  # BullMQ's key prefix for the queue


@pytest.fixture
def email_app(sb: Stackblaze, redis_url: str, smtp_sink: SmtpSink, tmp_path: Path) -> Iterator[DeployedApp]:
    need("node")
    need("npm")
    app = DeployedApp(sb, copy_example("bullmq-email", tmp_path))
    # As a user points a deployed app at its servers: `env set` before the first deploy. A lock of 3 s, checked
    # every second, lets a killed replica's jobs be taken again within seconds (BullMQ's default: 30 s).
    app.run("env", "set", "REDIS_HOST=127.0.0.1", f"REDIS_PORT={urlparse(redis_url).port}",
            f"SMTP_PORT={smtp_sink.port}", "BULLMQ_LOCK_DURATION_MS=3000", "BULLMQ_STALLED_INTERVAL_MS=1000")
    started = time.monotonic()
    app.deploy()
    print(f"\nbullmq-email deployed in {time.monotonic() - started:.1f}s")
    yield app


def enqueue(app: DeployedApp, redis_url: str, count: int = JOBS) -> None:
    port = str(urlparse(redis_url).port)
    out = run_in_release(app, "node", "enqueue.js", str(count), env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": port})
    assert f"queued {count} emails" in out


def wait_all_sent(sink: SmtpSink, timeout: float = 120) -> None:
    wait_for(f"{JOBS} distinct emails at the SMTP server", lambda: sink.counter.distinct() >= JOBS, timeout=timeout)


def assert_complete(sink: SmtpSink, client: redis.Redis, what: str) -> None:
    """Every job's email arrived, none failed (BullMQ's failed set, from Redis), each completed; says duplicates."""
    counts = sink.counter.counts()
    assert set(counts) == {f"email-{n}" for n in range(1, JOBS + 1)}, f"{what}: wrong job ids at the SMTP server"
    failed = client.zcard(f"{QUEUE}:failed")
    assert failed == 0, f"{what}: {failed} jobs in BullMQ's failed set"
    wait_for("BullMQ to record every job completed", lambda: client.zcard(f"{QUEUE}:completed") == JOBS, timeout=30)
    duplicates = sum(counts.values()) - len(counts)
    print(f"{what}: {len(counts)} distinct emails, {duplicates} duplicates, 0 failed")


def sent_at_least(sink: SmtpSink, count: int) -> None:
    wait_for(f"{count} emails sent", lambda: sink.counter.distinct() >= count, timeout=60)


def test_two_replicas_send_every_email_once(email_app: DeployedApp, smtp_sink: SmtpSink, redis_url: str) -> None:
    started = time.monotonic()
    enqueue(email_app, redis_url)
    wait_all_sent(smtp_sink)
    print(f"\n{JOBS} emails by 2 replicas in {time.monotonic() - started:.1f}s")
    assert_complete(smtp_sink, redis_client(redis_url), "2 replicas")
    assert sum(smtp_sink.counter.counts().values()) == JOBS, "an email was sent twice with no replica lost"
    assert set(email_app.replicas_logging("sent email-")) == {1, 2}


def test_scaling_from_one_to_four_mid_run(email_app: DeployedApp, smtp_sink: SmtpSink, redis_url: str) -> None:
    email_app.scale(1)
    enqueue(email_app, redis_url)
    sent_at_least(smtp_sink, 100)
    email_app.scale(4)
    at_scale = smtp_sink.counter.distinct()
    assert at_scale < JOBS - 200, f"the run was over ({at_scale} sent) before the 4 replicas ran"
    wait_all_sent(smtp_sink)
    assert_complete(smtp_sink, redis_client(redis_url), "scaled 1 -> 4")
    assert set(email_app.replicas_logging("sent email-")) == {1, 2, 3, 4}


def test_redeploy_mid_run_fails_no_job(email_app: DeployedApp, smtp_sink: SmtpSink, redis_url: str) -> None:
    enqueue(email_app, redis_url)
    sent_at_least(smtp_sink, 100)
    email_app.touch()
    email_app.deploy()
    assert smtp_sink.counter.distinct() < JOBS, "the run was over before the redeploy finished: not mid-run"
    assert {r["release"] for r in email_app.replicas()} == {2}
    wait_all_sent(smtp_sink)
    assert_complete(smtp_sink, redis_client(redis_url), "redeployed")
    # Each old replica was stopped with SIGTERM and finished its jobs in hand: worker.close(), then exit 0.
    assert email_app.replicas_logging("closed gracefully") == {1: 1, 2: 1}


def test_a_killed_replica_is_restarted_and_its_jobs_taken_again(email_app: DeployedApp, smtp_sink: SmtpSink,
                                                                 redis_url: str) -> None:
    client = redis_client(redis_url)
    enqueue(email_app, redis_url)
    sent_at_least(smtp_sink, 100)
    victim = email_app.replicas()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    restarted = wait_for("replica 1 restarted", lambda: next(
        (r for r in email_app.replicas() if r["replica"] == victim["replica"] and r["restart_count"] >= 1
         and r["state"] == "running" and r["pid"] != victim["pid"]), None), timeout=30)
    assert restarted["restart_count"] == 1
    wait_all_sent(smtp_sink)
    assert_complete(smtp_sink, client, "a replica killed")
    # The jobs the killed replica held went back through BullMQ's stalled-job check (its events stream, in Redis).
    stalled = [fields for _, fields in client.xrange(f"{QUEUE}:events") if fields.get("event") == "stalled"]
    assert stalled, "no job was taken again by the stalled-job check"
    print(f"a replica killed: {len(stalled)} stalled jobs taken again")
