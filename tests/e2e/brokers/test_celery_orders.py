"""examples/celery-orders on stackblaze, against a real redis-server as broker and result backend: every order is
processed and its result stored while the worker runs, scales, is redeployed or has a replica killed.

The example acknowledges a task after it ran (`task_acks_late=True`), so a task whose worker is killed stays
unacknowledged in Redis and is delivered again (at-least-once; a task may run twice, so process_order counts its
runs per order); `task_reject_on_worker_lost=True` requeues at once a task whose pool process alone died. Killing
the replica's main process (the Celery master, what `ps` shows) leaves the unacknowledged tasks to Redis's
visibility timeout: kombu restores those older than it when a worker connects, which the restarted replica does
about 0.7 s after the kill, and otherwise only every ~100 s. The tests set the timeout to 0.3 s (Celery's
default: an hour) so that the restarted replica usually takes them back when it connects; when it connects
before they are that old (a race with stackblaze's at-once first restart), kombu's periodic restore takes
them back within ~100 s, which the kill test allows. A timeout that short may also redeliver a live worker's
reserved task (a duplicate, counted). Every count comes from Redis (results, the per-order run
counter), never from our logs.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.brokers.apps import DeployedApp, redis_client, run_in_release
from tests.e2e.brokers.conftest import copy_example
from tests.integration.conftest import Stackblaze, wait_for

pytestmark = pytest.mark.timeout(300)

ORDERS = 500
ORDER_IDS = [f"order-{n}" for n in range(1, ORDERS + 1)]


@pytest.fixture
def orders_app(sb: Stackblaze, redis_url: str, tmp_path: Path) -> Iterator[DeployedApp]:
    app = DeployedApp(sb, copy_example("celery-orders", tmp_path))
    # 0.1 s of work per order: 500 orders last seconds, long enough to scale, redeploy and kill mid-run.
    app.run("env", "set", f"REDIS_URL={redis_url}", "VISIBILITY_TIMEOUT=0.3", "ORDER_WORK_SECONDS=0.1")
    started = time.monotonic()
    app.deploy()
    print(f"\ncelery-orders deployed in {time.monotonic() - started:.1f}s")
    yield app


def enqueue(app: DeployedApp, redis_url: str) -> None:
    out = run_in_release(app, "python", "enqueue.py", str(ORDERS), env={"REDIS_URL": redis_url})
    assert f"queued {ORDERS} orders" in out


def processed(client: redis.Redis) -> int:
    return int(client.hlen("orders:processed"))


def processed_at_least(client: redis.Redis, count: int) -> None:
    wait_for(f"{count} orders processed", lambda: processed(client) >= count, timeout=60)


def results(client: redis.Redis) -> dict[str, str]:
    """Each order's state in Celery's result backend (Redis), by task id; missing ones are absent."""
    raw = client.mget([f"celery-task-meta-{order}" for order in ORDER_IDS])
    return {order: json.loads(value)["status"] for order, value in zip(ORDER_IDS, raw, strict=True) if value}


def assert_complete(client: redis.Redis, what: str, timeout: float = 120) -> None:
    """Every order has a SUCCESS result in the backend, and ran at least once; says how many ran twice."""
    wait_for(f"{ORDERS} results in the backend", lambda: len(results(client)) == ORDERS, timeout=timeout)
    states = results(client)
    assert set(states.values()) == {"SUCCESS"}, f"{what}: {[o for o, s in states.items() if s != 'SUCCESS']}"
    runs = {order: int(count) for order, count in client.hgetall("orders:processed").items()}
    assert set(runs) == set(ORDER_IDS), f"{what}: orders never processed: {set(ORDER_IDS) - set(runs)}"
    print(f"{what}: {len(states)} results, {sum(runs.values()) - len(runs)} orders ran twice")


def test_two_replicas_process_every_order(orders_app: DeployedApp, redis_url: str) -> None:
    client = redis_client(redis_url)
    started = time.monotonic()
    enqueue(orders_app, redis_url)
    assert_complete(client, "2 replicas")
    print(f"{ORDERS} orders by 2 replicas in {time.monotonic() - started:.1f}s")
    assert sum(int(v) for v in client.hvals("orders:processed")) == ORDERS, "an order ran twice, no replica lost"
    assert set(orders_app.replicas_logging("processed by replica")) == {1, 2}


def test_scaling_from_one_to_four_mid_run(orders_app: DeployedApp, redis_url: str) -> None:
    client = redis_client(redis_url)
    orders_app.scale(1)
    enqueue(orders_app, redis_url)
    processed_at_least(client, 40)
    orders_app.scale(4)
    at_scale = processed(client)
    assert at_scale < ORDERS - 100, f"the run was over ({at_scale} processed) before the 4 replicas ran"
    assert_complete(client, "scaled 1 -> 4")
    assert set(orders_app.replicas_logging("processed by replica")) == {1, 2, 3, 4}


def test_redeploy_mid_run_loses_no_order(orders_app: DeployedApp, redis_url: str) -> None:
    client = redis_client(redis_url)
    enqueue(orders_app, redis_url)
    processed_at_least(client, 40)
    orders_app.touch()
    orders_app.deploy()
    assert processed(client) < ORDERS, "the run was over before the redeploy finished: not mid-run"
    assert {r["release"] for r in orders_app.replicas()} == {2}
    assert_complete(client, "redeployed")
    # Each old replica got SIGTERM: Celery's warm shutdown, which finishes the tasks in hand.
    assert orders_app.replicas_logging("Warm shutdown") == {1: 1, 2: 1}


def test_a_killed_replica_is_restarted_and_its_orders_redelivered(orders_app: DeployedApp, redis_url: str) -> None:
    client = redis_client(redis_url)
    enqueue(orders_app, redis_url)
    processed_at_least(client, 40)
    victim = orders_app.replicas()[0]
    os.kill(victim["pid"], signal.SIGKILL)  # the Celery master; stackblaze kills its pool processes
    restarted = wait_for("replica 1 restarted", lambda: next(
        (r for r in orders_app.replicas() if r["replica"] == victim["replica"] and r["restart_count"] >= 1
         and r["state"] == "running" and r["pid"] != victim["pid"]), None), timeout=30)
    assert restarted["restart_count"] == 1
    # Usually seconds; when the restarted replica connected before its tasks were older than the visibility
    # timeout, kombu's periodic restore (every ~100 s) redelivers them.
    assert_complete(client, "a replica killed", timeout=200)
