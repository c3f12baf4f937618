"""Wake from zero by push, end to end: the real daemon at STACKBLAZE_TIME_SCALE=0.01 with a poll of 3000s (30 s
real), so a service woken within the waits below was woken by the push, and the decision log says which push.
The poll still wakes a service whose Redis refuses keyspace notifications. Real redis-server, RQ and BullMQ
workers deployed by stackblaze. Latency itself is measured by bench/autoscale_wake.py, not asserted here."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from tests.integration.autoscale_wake.conftest import redis_with
from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.integration.test_autoscale import enqueue, events, project, running, service
from tests.tools import need

LONG_POLL = "      min: 0\n      max: 2\n      poll: 3000s\n      idle_after: 0s\n"  # 30 s real between polls
WAIT = 15.0  # real seconds: half the poll


def decisions(sb: Stackblaze) -> list[dict[str, Any]]:
    return sb.run("autoscale", "why", "worker", "-n", "200", "--json").json()["decisions"]  # type: ignore[no-any-return]


def at_zero_and_listening(sb: Stackblaze) -> None:
    wait_for("the worker at 0", lambda: service(sb)["desired"] == 0 and not service(sb)["replicas"], 30)
    (told,) = wait_for("the listener", lambda: events(sb, "autoscale-push"), 20)
    assert "woken from 0 by push" in told["message"], told


def test_an_rq_job_wakes_the_idle_worker_by_keyspace_notification_and_runs(tmp_path: Path, sb: Stackblaze) -> None:
    with redis_with(tmp_path / "redis", notify="Kl") as url:  # the operator turned them on
        sb.run("deploy", str(project(tmp_path, sb, url, autoscale=LONG_POLL)), timeout=300)
        at_zero_and_listening(sb)
        conn = redis.Redis.from_url(url)
        assert wait_for("the listener", lambda: conn.pubsub_channels("__keyspace*"), WAIT) == [
            b"__keyspace@0__:rq:queue:default"]
        enqueue(conn, [1])
        wait_for("the job run by a woken replica", lambda: conn.sismember("done", 1), WAIT)
        wake = next(d for d in decisions(sb) if d["rule"] == "wake")
        assert wake["facts"]["push"] == "rpush onto 'rq:queue:default'"
        # Woken, it listens no more: a busy broker gets no extra load.
        wait_for("the listener gone", lambda: not conn.pubsub_channels("__keyspace*"), WAIT)
        why = sb.run("autoscale", "why", "worker", "-n", "200").out
        assert "wake: 1 ready > activation 0, going to 1 (push: rpush onto 'rq:queue:default')" in why


def test_where_keyspace_notifications_are_refused_the_poll_still_wakes_it(tmp_path: Path, sb: Stackblaze) -> None:
    with redis_with(tmp_path / "redis", config=False) as url:  # CONFIG renamed away, as on managed Redis
        poll = LONG_POLL.replace("3000s", "300s")  # 3 s real: this test waits for the poll
        sb.run("deploy", str(project(tmp_path, sb, url, autoscale=poll)), timeout=300)
        wait_for("the worker at 0", lambda: service(sb)["desired"] == 0 and not service(sb)["replicas"], 30)
        (told,) = wait_for("why there is no push", lambda: events(sb, "autoscale-push"), 20)
        assert "cannot read notify-keyspace-events" in told["message"] and "woken from 0 by the poll" in told["message"]
        conn = redis.Redis.from_url(url)
        enqueue(conn, [1])
        wait_for("the job run by a replica the poll woke", lambda: conn.sismember("done", 1), 30)
        wake = next(d for d in decisions(sb) if d["rule"] == "wake")
        assert "push" not in wake["facts"]
        assert len(events(sb, "autoscale-push")) == 1  # said once, not at every poll


BULL_WORKER = """\
const { Worker } = require('bullmq');
const IORedis = require('ioredis');
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const marks = new IORedis(connection);
const worker = new Worker('email', async (job) => { await marks.sadd('started', job.id); }, { connection });
process.on('SIGTERM', async () => { await worker.close(); process.exit(0); });
"""


def bull_project(tmp_path: Path, sb: Stackblaze, bullmq_dir: Path, url: str) -> Path:
    (bullmq_dir / "wake_worker.js").write_text(BULL_WORKER)  # beside its node_modules
    spec = f"""\
project: scaled
env:
  REDIS_URL: "{url}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: worker
    type: worker
    start: {need("node")} {bullmq_dir / "wake_worker.js"}
    shutdown_grace: 300s
    autoscale:
      queues: {{kind: bullmq, url: "{url}", names: [email]}}
{LONG_POLL}"""
    return write_project(tmp_path / "app", spec)


def bull(bullmq_dir: Path, url: str, *ops: dict[str, object]) -> None:
    port = str(urlsplit(url).port)
    subprocess.run([need("node"), "bullmq_client.js", port, "ops", json.dumps(ops)], cwd=bullmq_dir, check=True,
                   timeout=60)


def test_bullmq_a_paused_queue_is_pushed_but_not_woken_and_its_resume_wakes_it(
        tmp_path: Path, sb: Stackblaze, bullmq_dir: Path) -> None:
    with redis_with(tmp_path / "redis") as url:  # no keyspace notifications: BullMQ's events stream
        sb.run("deploy", str(bull_project(tmp_path, sb, bullmq_dir, url)), timeout=300)
        at_zero_and_listening(sb)
        bull(bullmq_dir, url, {"op": "pause", "queue": "email"}, {"op": "add", "queue": "email"})
        asleep = wait_for("the push read", lambda: [d for d in decisions(sb) if d["facts"].get("push")], WAIT)[0]
        assert asleep["rule"] == "asleep" and asleep["facts"]["push"].startswith("bullmq waiting job 1")
        assert any("'email' is paused" in w for w in asleep["warnings"])  # the read decided: paused runs nothing
        assert not service(sb)["replicas"]
        bull(bullmq_dir, url, {"op": "resume", "queue": "email"})
        conn = redis.Redis.from_url(url)
        wait_for("the job run by a woken replica", lambda: conn.sismember("started", "1"), WAIT)
        wake = next(d for d in decisions(sb) if d["rule"] == "wake")
        assert wake["facts"]["push"] == "bullmq resumed in 'email'"


def test_bullmq_a_job_delayed_into_the_future_wakes_nothing_until_it_is_due(
        tmp_path: Path, sb: Stackblaze, bullmq_dir: Path) -> None:
    with redis_with(tmp_path / "redis") as url:
        sb.run("deploy", str(bull_project(tmp_path, sb, bullmq_dir, url)), timeout=300)
        at_zero_and_listening(sb)
        added = time.time()
        bull(bullmq_dir, url, {"op": "add", "queue": "email", "opts": {"delay": 4000}})
        due = added + 4.0
        while time.time() < due - 0.5:  # not due yet: nothing runs
            assert not service(sb)["replicas"], "woken by a job delayed into the future"
        conn = redis.Redis.from_url(url)
        wait_for("the job run once due", lambda: conn.sismember("started", "1"), WAIT)
        wake = next(d for d in decisions(sb) if d["rule"] == "wake")
        assert wake["facts"]["push"] == "bullmq delayed job 1 due in 'email'"
        assert wake["at"] >= due - 0.05 and wake["due"] == 1


def test_the_worker_stays_put_when_its_replicas_run(tmp_path: Path, sb: Stackblaze) -> None:
    """min 1: never at 0, so no listener is started (no load on a busy broker) and nothing is said about push."""
    with redis_with(tmp_path / "redis", notify="Kl") as url:
        sb.run("deploy", str(project(tmp_path, sb, url, autoscale=LONG_POLL.replace("min: 0", "min: 1"))),
               timeout=300)
        wait_for("one replica", lambda: running(sb), 30)
        conn = redis.Redis.from_url(url)
        enqueue(conn, [1])
        wait_for("the job done", lambda: conn.sismember("done", 1), WAIT)
        assert not events(sb, "autoscale-push")
        assert not [d for d in decisions(sb) if d["facts"].get("push")]
        assert not conn.pubsub_channels("__keyspace*")
