"""shop's Redis has its own lifecycle: three redeploys of every worker (new releases) leave its PID and 1,000 keys
alone; after a `kill -9` of Redis, and after one of the daemon (then `daemon start`), what was written 2 s before
is there and the workers, reconnecting by themselves, go on with jobs enqueued after (no redeploy, same PIDs)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.e2e.internal.conftest import Shop
from tests.e2e.internal.jobs import Batch, reachable, run_batch
from tests.e2e.internal.shop import WORKERS
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.timeout(420)
KEYS = {f"kept:{n}": str(n) for n in range(1000)}
# appendfsync everysec: a write reaches the disk within about a second; the bound is 2 s.
FSYNC_WAIT = 2.2


def keys_kept(shop: Shop) -> bool:
    return shop.redis().mget(list(KEYS)) == list(KEYS.values())


def test_worker_redeploys_leave_redis_and_its_data_alone(shop: Shop) -> None:
    redis_pid, db_pid = shop.pid("cache"), shop.pid("db")
    shop.redis().mset(KEYS)
    releases = {name: shop.release_of(name) for name in WORKERS}
    for n in range(3):
        for name in WORKERS:  # a code change in each worker: three new releases each
            notes = shop.root / name / "CHANGES.md"
            notes.write_text((notes.read_text() if notes.exists() else "") + f"- change {n}\n")
        started = time.monotonic()
        shop.deploy()
        print(f"\nredeploy {n + 1} of the three workers: {time.monotonic() - started:.1f}s")
    assert {name: shop.release_of(name) for name in WORKERS} == {name: r + 3 for name, r in releases.items()}
    assert shop.release_of("cache") == 1
    assert (shop.pid("cache"), shop.pid("db")) == (redis_pid, db_pid), "a worker deploy restarted a server"
    assert keys_kept(shop)
    starts = [e for e in shop.sb.events("cache") if e["kind"] == "start" and e["service"] == "cache"]
    assert len(starts) == 1, starts
    run_batch(shop, shop.sink, Batch(101, 100), what="after three redeploys")


def test_a_killed_redis_keeps_its_data_and_the_workers_reconnect(shop: Shop) -> None:
    workers = shop.wait_running(*WORKERS)
    pid = shop.pid("cache")
    assert pid is not None
    connects = int(shop.redis().get("go:connects") or 0)
    shop.redis().set("before-kill", "kept")
    time.sleep(FSYNC_WAIT)  # the age of the write is the condition under test, not a wait for something
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    new_pid = wait_for("Redis restarted", lambda: (p := shop.pid("cache")) not in (None, pid) and p, timeout=30)
    wait_for("Redis answering", lambda: reachable(shop.redis()), timeout=30)
    print(f"\nRedis {pid} killed, {new_pid} answering after {time.monotonic() - killed:.1f}s")
    assert shop.redis().get("before-kill") == "kept" and keys_kept(shop)
    run_batch(shop, shop.sink, Batch(201, 100), what="after kill -9 of Redis")
    now = shop.pids()
    assert {name: now[name] for name in WORKERS} == workers, "a worker was restarted rather than reconnecting"
    assert int(shop.redis().get("go:connects") or 0) > connects  # the Go worker dialed cache.internal again


def test_a_killed_daemon_leaves_redis_and_the_workers_going(shop: Shop) -> None:
    workers = shop.wait_running(*WORKERS)
    redis_pid = shop.pid("cache")
    shop.redis().set("before-daemon-kill", "kept")
    time.sleep(FSYNC_WAIT)
    os.kill(shop.sb.daemon_pid(), signal.SIGKILL)
    shop.run("daemon", "start")
    assert shop.pid("cache") == redis_pid, "the daemon's restart restarted Redis"
    assert shop.redis().get("before-daemon-kill") == "kept" and keys_kept(shop)
    run_batch(shop, shop.sink, Batch(301, 100), what="after kill -9 of the daemon")
    now = shop.pids()
    assert {name: now[name] for name in WORKERS} == workers


def test_redis_killed_while_the_daemon_is_down_is_back_after_daemon_start(shop: Shop) -> None:
    workers = shop.wait_running(*WORKERS)
    redis_pid = shop.pid("cache")
    assert redis_pid is not None
    shop.redis().set("before-both-kills", "kept")
    time.sleep(FSYNC_WAIT)
    os.kill(shop.sb.daemon_pid(), signal.SIGKILL)
    os.kill(redis_pid, signal.SIGKILL)  # no daemon to see it: the runner reaps it and keeps the exit
    shop.run("daemon", "start")
    new_pid = wait_for("the daemon to restart Redis", lambda: (p := shop.pid("cache")) not in (None, redis_pid) and p,
                       timeout=30)
    wait_for("Redis answering", lambda: reachable(shop.redis()), timeout=30)
    print(f"\nRedis {redis_pid} killed while the daemon was down; {new_pid} after daemon start")
    assert shop.redis().get("before-both-kills") == "kept" and keys_kept(shop)
    run_batch(shop, shop.sink, Batch(401, 100), what="after kill -9 of the daemon, then of Redis")
    now = shop.pids()
    assert {name: now[name] for name in WORKERS} == workers
