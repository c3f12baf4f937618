"""A Go app from before modules (govendor's vendor/vendor.json, github.com/lib/pq vendored, no go.mod) with a
PostgreSQL-backed queue, deployed from its Procfile alone: `release:` applies schema.sql with psql before any
worker runs, then 500 jobs are processed by 2 replicas. Every count comes from PostgreSQL, never from our logs.

The app (./app) claims a job with UPDATE ... FOR UPDATE SKIP LOCKED inside a transaction that lasts as long as the
job's work, so two replicas never take the same row; its worker exits 1 with PostgreSQL's error if the jobs
table is not there when it starts.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Stackblaze, wait_for
from tests.integration.test_release_phase import sql
from tests.tools import need

pytestmark = pytest.mark.timeout(600)

APP = Path(__file__).resolve().parent / "app"
JOBS = 500


def test_gopath_app_with_a_release_line_processes_500_jobs_counted_in_postgresql(
        database_url: str, sb: Stackblaze, tmp_path: Path) -> None:
    """database_url first: pytest ends fixtures in reverse, so the workers stop before PostgreSQL, which would
    otherwise wait for their connections to close."""
    need("go")
    psql = need("psql", "apt-get install -y postgresql")
    app = tmp_path / "pgqueue"
    shutil.copytree(APP, app)  # as a user has it: no go.mod, no stackblaze.yaml, no binaries
    assert not (app / "go.mod").exists() and not (app / "stackblaze.yaml").exists()
    # lib/pq asks for TLS unless told (sslmode=require), as Heroku's Postgres wants; this server is on loopback.
    url = f"{database_url}?sslmode=disable"
    # 10 ms of work per job: 500 jobs last seconds, long enough for both replicas to take a share.
    sb.run("env", "set", f"DATABASE_URL={url}", "JOB_MILLIS=10", f"STACKBLAZE_TEST_HOME={sb.home}",
           "--project", "pgqueue")
    assert sql(database_url, "SELECT to_regclass('jobs') IS NULL") == ["t"]

    started = time.monotonic()
    out = sb.run("deploy", str(app), timeout=600)
    print(f"\npgqueue built and deployed in {time.monotonic() - started:.1f}s")
    deployed = out.out + out.err
    assert 'release command: psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f schema.sql' in deployed
    assert "CREATE TABLE" in deployed
    build_log = sb.run("logs", "worker", "--build", "--project", "pgqueue").out
    assert "GOPATH mode (GO111MODULE=off) at $GOPATH/src/github.com/acme/pgqueue" in build_log
    assert "github.com/acme/pgqueue/vendor/github.com/lib/pq" in build_log  # go install -v built the vendored driver
    assert "==> installed on the PATH: pgworker" in build_log
    assert sql(database_url, "SELECT to_regclass('jobs') IS NOT NULL") == ["t"]

    # The first replica found the table at its start: its first line, and no restart after a failed one.
    wait_for("replica 1 consuming", lambda: "pgworker 1: consuming jobs (0 queued)" in worker_log(sb))
    assert "does not exist" not in worker_log(sb)
    assert restarts(sb) == [0]
    kinds = [e["kind"] for e in sb.events("worker")]
    assert kinds.count("release-command") == 1 and kinds.index("release-command") < kinds.index("start"), kinds

    sb.run("scale", "worker", "--replicas", "2", "--project", "pgqueue")
    wait_for("replica 2 consuming", lambda: "pgworker 2: consuming jobs" in worker_log(sb), timeout=60)
    subprocess.run([psql, database_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                    f"INSERT INTO jobs (payload) SELECT 'job-' || n FROM generate_series(1, {JOBS}) n"], check=True)

    started = time.monotonic()
    wait_for(f"{JOBS} jobs done", lambda: sql(database_url, "SELECT count(*) FROM jobs WHERE state='done'")
             == [str(JOBS)], timeout=120, interval=0.2)
    print(f"{JOBS} jobs done in {time.monotonic() - started:.1f}s")
    by_replica = dict(row.split("|") for row in sql(
        database_url, "SELECT done_by, count(*) FROM jobs GROUP BY done_by ORDER BY done_by"))
    print("jobs by replica:", by_replica)
    assert set(by_replica) == {"1", "2"}, f"both replicas take jobs: {by_replica}"
    assert sql(database_url, "SELECT count(*) FROM jobs WHERE done_at IS NULL OR state <> 'done'") == ["0"]
    assert restarts(sb) == [0, 0]

    # SIGTERM: each replica finishes its job and exits 0 by itself, well within the grace period.
    sb.run("scale", "worker", "--replicas", "0", "--project", "pgqueue")
    wait_for("both replicas stopped", lambda: not sb.replicas("worker"), timeout=60)
    log = worker_log(sb)
    exits = [e["details"] for e in sb.events("worker") if e["kind"] == "exit"]
    assert [(x["code"], x["signal"], x["killed_after_grace"]) for x in exits] == [(0, None, None)] * 2, exits
    assert "pgworker 1: terminated, stopping after" in log and "pgworker 2: terminated, stopping after" in log


def restarts(sb: Stackblaze) -> list[int]:
    return [r["restart_count"] for r in sorted(sb.replicas("worker"), key=lambda r: r["replica"])]


def worker_log(sb: Stackblaze) -> str:
    return sb.run("logs", "worker", "-n", "5000", "--project", "pgqueue").out
