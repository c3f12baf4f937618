"""shop's PostgreSQL (`db`): `psql "$DATABASE_URL" -c 'select 1'` as the orders worker would run it (its own mount
namespace, so db.internal is its hosts file's, and its own env, read from /proc/<pid>/environ); `stop db` with an
idle client connected returns within 10 s (PostgreSQL's fast shutdown, SIGINT); its data is kept."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.internal.conftest import Shop
from tests.e2e.internal.shop import environ, gone, in_worker
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.timeout(180)


def psql_in_worker(pid: int, sql: str) -> str:
    env = environ(pid)
    with in_worker(pid, "psql", env["DATABASE_URL"], "-v", "ON_ERROR_STOP=1", "-tAc", sql, env=env,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as done:
        out, _ = done.communicate(timeout=30)
    assert done.returncode == 0, f"psql in the worker exited {done.returncode}: {out}"
    return str(out).strip()


def test_psql_from_a_worker_and_a_fast_stop_with_an_idle_client(shop: Shop) -> None:
    worker = shop.pid("orders")
    assert worker is not None
    url = environ(worker)["DATABASE_URL"]
    assert url == "postgresql://app@db.internal:5432/app"  # auth: none, by name
    assert psql_in_worker(worker, "select 1") == "1"
    psql_in_worker(worker, "create table if not exists kept (n int); insert into kept values (42)")

    server = shop.pid("db")
    assert server is not None
    # A pooled client's idle connection, from the worker's namespace too.
    with in_worker(worker, "psql", url, env=environ(worker), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT) as idle:
        assert idle.stdin is not None and idle.stdout is not None
        idle.stdin.write("select 'connected';\n")
        idle.stdin.flush()
        assert wait_for("the idle client's answer", lambda: "connected" in idle.stdout.readline())
        began = time.monotonic()
        shop.run("stop", "db", timeout=60)
        took = time.monotonic() - began
        print(f"\nstop db with an idle client connected: {took:.2f}s")
        assert took < 10, f"stop took {took:.1f}s; the issue's bound is 10 s"
        assert wait_for("postgres gone", lambda: gone(server), timeout=5)
        idle.kill()

    shop.run("start", "db", timeout=60)
    again = wait_for("postgres running again", lambda: shop.pid("db"), timeout=30)
    assert again != server
    answer = wait_for("the kept row, from the worker", lambda: _try(worker, "select n from kept"), timeout=30)
    assert answer == "42"
    assert shop.pid("orders") == worker  # the database's stop and start left the worker alone


def _try(pid: int, sql: str) -> str | None:
    try:
        return psql_in_worker(pid, sql)
    except AssertionError:  # not accepting connections yet
        return None
