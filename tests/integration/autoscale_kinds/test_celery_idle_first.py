"""Issue 16 §4 for Celery, on a real daemon with real Celery workers on a real redis-server: busy state comes
from the workers' own heartbeats (engine/autoscale/celery_busy.py), with an ordinary start command (`-c 1`, no
per-replica name, no busy_probe). 4 replicas, the 2 highest busy with long tasks, the queue drained: the 2 idle
ones stop first, the busy ones finish their tasks, nothing is SIGKILLed. With --without-heartbeat, one warning says why
the busy state is unknown.

STACKBLAZE_TIME_SCALE=0.05: poll 10s is 0.5 s real, the scale-down window 20s is 1 s, idle_after 60s is 3 s,
shutdown_grace 300s is 15 s, longer than the 8 s tasks, so that a wrong victim would show as a wrong choice (the
assertion on the victims), not as a kill; Celery's heartbeats are every 2 s real whatever the scale."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests.integration.autoscale_kinds.kinds import CELERY_APP, Broker, Kind
from tests.integration.autoscale_kinds.scaled import Scaled, scaled_project
from tests.integration.conftest import Stackblaze, wait_for

SCALE = 0.05
TASK = 8.0  # real seconds
AUTOSCALE = ("      min: 0\n      max: 4\n      poll: 10s\n      idle_after: 60s\n      target_per_replica: 1\n"
             "      scale_down: {window: 20s}\n")
START = f"{sys.executable} -m celery -A tasks worker -c 1 -Q orders --without-gossip --without-mingle -l warning"
# Each replica also consumes a queue of its own, so that the test chooses which replicas are busy (the busy state
# itself comes from the heartbeats, which need no such change).
ROUTED = START.replace("-Q orders", "-Q orders,orders-$STACKBLAZE_REPLICA")


@contextlib.contextmanager
def heartbeats(url: str) -> Iterator[dict[int, int]]:
    """pid -> `active` of the latest heartbeat each Celery worker PUBLISHed (decoded here, not by stackblaze)."""
    latest: dict[int, int] = {}
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("/0.celeryev/worker.*")
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                event = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
                if event["type"] == "worker-offline":
                    latest.pop(event["pid"], None)
                else:
                    latest[event["pid"]] = event["active"]

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield latest
    finally:
        done.set()
        thread.join(5)
        pubsub.close()


def deploy(tmp_path: Path, make_sb: Callable[[float], Stackblaze], broker_for: Callable[[str], Broker],
           count: redis.Redis, redis_url: str, start: str, *, settle: bool = True) -> Scaled:
    kind = Kind("celery", "orders", start, {"tasks.py": CELERY_APP})
    broker = broker_for("celery")
    sb = make_sb(SCALE)
    app = scaled_project(tmp_path, sb, kind, broker, redis_url, autoscale=AUTOSCALE, grace="300s")
    worker = Scaled(sb, kind, broker, count, SCALE)
    worker.deploy(app)
    if settle:
        wait_for("settled at 0", lambda: not worker.replicas(), 60, interval=0.2)
    return worker


def heartbeat_warnings(worker: Scaled) -> list[dict[str, Any]]:
    """`autoscale-warning` events about heartbeats (a queue not found before the first task is another one)."""
    return [e for e in worker.events("autoscale-warning") if "heartbeat" in e["message"]]


def holders(worker: Scaled) -> dict[int, int]:
    """replica -> the job it runs now (jobs.py notes it)."""
    return {int(k): int(v) for k, v in worker.count.hgetall("holder").items()}


@pytest.mark.timeout(180)
def test_celery_idle_replicas_stop_first_by_their_heartbeats_and_no_task_is_killed(
        tmp_path: Path, make_sb: Callable[[float], Stackblaze], broker_for: Callable[[str], Broker],
        count: redis.Redis, redis_url: str) -> None:
    # Not settled at 0 first: the manual scale to 4 pauses the loop straight away (settling cost idle_after, 3 s).
    worker = deploy(tmp_path, make_sb, broker_for, count, redis_url, ROUTED, settle=False)
    try:
        with heartbeats(redis_url) as active:
            worker.sb.run("scale", "worker", "--replicas", "4")
            wait_for("4 workers heartbeating", lambda: len(active) == 4 and worker.running() == 4, 60, interval=0.1)
            sender = Celery("sender", broker=redis_url)
            for job, replica in ((1, 3), (2, 4)):  # the highest numbers: a highest-first choice would stop them
                sender.send_task("jobs.run", (job, TASK), queue=f"orders-{replica}")
            sender.close()
            busy = set(wait_for("2 replicas busy", lambda: len(holders(worker)) == 2 and holders(worker), 30,
                                interval=0.05))
            assert busy == {3, 4}
            # the daemon reads the same heartbeats: wait until they say so (every 2 s), not for a fixed time
            wait_for("2 heartbeats with a task", lambda: sorted(active.values()) == [0, 0, 1, 1], 10, interval=0.05)
            worker.sb.run("scale", "worker", "--auto")  # 2 in flight / target 1: 2 replicas, 2 to stop
            wait_for("the 2 busy replicas left", lambda: {r["replica"] for r in worker.replicas()} == busy, 30,
                     interval=0.05)
            assert len(holders(worker)) == 2  # both tasks still running: the victims were the idle ones
        (change,) = [e for e in worker.events("autoscale") if e["details"].get("to") == 2]
        victims = set(change["details"]["victims"])
        print(f"\ncelery: busy {sorted(busy)}; {change['message']}")
        assert victims == {1, 2, 3, 4} - busy
        assert all(f"worker.{n} (idle)" in change["message"] for n in victims), change["message"]
        assert {change["details"]["busy"][str(n)]["source"] for n in (1, 2, 3, 4)} == {"celery"}
        assert all(change["details"]["busy"][str(n)]["busy"] for n in busy)
        wait_for("both tasks done", lambda: worker.done() == 2, 30, interval=0.1)
        assert worker.runs() == {1: 1, 2: 1}
        wait_for("back to 0", lambda: not worker.replicas(), 30, interval=0.1)
        assert not worker.kills(), worker.kills()  # no drain-killed, no SIGKILL after a grace
        assert not heartbeat_warnings(worker)
    finally:
        worker.close()


@pytest.mark.timeout(120)
def test_celery_without_heartbeats_is_said_once(
        tmp_path: Path, make_sb: Callable[[float], Stackblaze], broker_for: Callable[[str], Broker],
        count: redis.Redis, redis_url: str) -> None:
    worker = deploy(tmp_path, make_sb, broker_for, count, redis_url, START + " --without-heartbeat")
    try:
        worker.sb.run("scale", "worker", "--replicas", "2")  # paused: the loop listens while it has replicas
        (warning,) = wait_for("a heartbeat warning", lambda: heartbeat_warnings(worker), 30, interval=0.1)
        print(f"\ncelery --without-heartbeat: {warning['message']}")
        assert "no Celery heartbeat from worker.1, worker.2 in 6s" in warning["message"]
        assert "--without-heartbeat" in warning["message"]
        worker.sb.run("scale", "worker", "--auto")  # no work: to 0 after idle_after
        (change,) = wait_for("a scale-down", lambda: [e for e in worker.events("autoscale")
                                                      if e["details"].get("from") == 2], 30, interval=0.1)
        assert change["details"]["victims"] == [2] and "(idle)" not in change["message"]  # unknown: highest first
        assert {b["source"] for b in change["details"]["busy"].values()} <= {"unknown"}
        wait_for("back to 0", lambda: not worker.replicas(), 30, interval=0.1)
        assert len(heartbeat_warnings(worker)) == 1
    finally:
        worker.close()
