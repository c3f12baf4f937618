"""Wake from zero by the poll alone (STACKBLAZE_AUTOSCALE_PUSH=off in the daemon's environment): at 0 replicas the
loop reads the queues at the pace it samples them with replicas (10 reads a poll) and wakes at the first read that
shows the job, not at the next poll. Real daemon at STACKBLAZE_TIME_SCALE=0.01, a poll of 1000s (10 s real, so a
read each second), a real redis-server and RQ worker. Latency itself is measured by bench/autoscale_wake.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from tests.integration.autoscale_wake.conftest import redis_with
from tests.integration.conftest import Stackblaze, wait_for
from tests.integration.test_autoscale import enqueue, events, project, service

POLL = 10.0  # real seconds: poll 1000s at STACKBLAZE_TIME_SCALE=0.01
INTERVAL = POLL / 10  # real seconds between two reads of a poll at 0
SPEC = "      min: 0\n      max: 2\n      poll: 1000s\n      idle_after: 0s\n"


def decisions(sb: Stackblaze) -> list[dict[str, Any]]:
    """Newest first, from the daemon's API (what `autoscale why worker --json` prints)."""
    answer = sb.api("/v1/services/worker/autoscale", {"project": "scaled", "n": 200})
    if answer is None:
        answer = sb.run("autoscale", "why", "worker", "-n", "200", "--json").json()
    return answer["decisions"]  # type: ignore[no-any-return]


def asleep(sb: Stackblaze) -> list[dict[str, Any]]:
    return [d for d in decisions(sb) if d["rule"] == "asleep"]


def test_without_push_a_job_enqueued_mid_poll_wakes_the_idle_worker_at_the_next_read(
        tmp_path: Path, sb: Stackblaze) -> None:
    sb.env["STACKBLAZE_AUTOSCALE_PUSH"] = "off"  # the daemon the deploy starts inherits it
    with redis_with(tmp_path / "redis", notify="Kl") as url:  # push would work here: only the switch stops it
        sb.run("deploy", str(project(tmp_path, sb, url, autoscale=SPEC)), timeout=300)
        wait_for("the worker at 0", lambda: service(sb)["desired"] == 0 and not service(sb)["replicas"], 60)
        (told,) = wait_for("why there is no push", lambda: events(sb, "autoscale-push"), 30)
        assert "push wake is off" in told["message"], told
        conn = redis.Redis.from_url(url)
        assert not conn.pubsub_channels("__keyspace*")  # no listener: the poll alone wakes it

        # One decision a poll while asleep, made with the poll's last read (not one per read).
        seen = len(asleep(sb))
        wait_for("two polls asleep", lambda: len(asleep(sb)) >= seen + 2, 4 * POLL)
        first, second = asleep(sb)[:2]
        assert (first["facts"]["read"], first["facts"]["reads"]) == (10, 10)
        assert first["at"] - second["at"] > POLL / 2

        # Enqueued mid-poll: one read a poll would see it at the next poll, up to POLL later.
        seen = len(asleep(sb))
        wait_for("a poll's decision", lambda: len(asleep(sb)) > seen, 3 * POLL)
        time.sleep(4.5 * INTERVAL)  # not a wait for anything: it puts the enqueue in the middle of the next poll
        enqueued = time.time()
        enqueue(conn, [1])
        wait_for("the job run by a woken replica", lambda: conn.sismember("done", 1), 3 * POLL)
        wake = next(d for d in decisions(sb) if d["rule"] == "wake")
        assert "push" not in wake["facts"] and wake["ready"] == 1
        assert 1 < wake["facts"]["read"] < wake["facts"]["reads"], wake  # the poll ended at the read that saw it
        assert wake["at"] - enqueued < 2 * INTERVAL, (wake, enqueued)  # the next read, or the one after it
        why = sb.run("autoscale", "why", "worker", "-n", "200").out
        assert "wake: 1 ready > activation 0, going to 1" in why
