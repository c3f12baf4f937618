"""Backing services on the local engine: the machine's real redis-server and PostgreSQL, started by a real
daemon before the workers that reference them, on their own 127.77.x.y address, their data on a disk that
outlives worker deploys, `env set`, a kill -9 of the server and of the daemon."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import Stackblaze, alive, reachable_home, wait_for, write_project
from tests.tools import need

redis = pytest.importorskip("redis")

WORKER = """\
import os, socket, time, urllib.parse
url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
def command(conn, *words):
    conn.sendall(b"".join([b"*%d\\r\\n" % len(words)] + [b"$%d\\r\\n%s\\r\\n" % (len(w), w) for w in words]))
    return conn.recv(1024)
while True:  # the server may come back (kill -9): reconnect, as a real client does
    try:
        with socket.create_connection((url.hostname, url.port or 6379), timeout=5) as conn:
            if url.password:
                command(conn, b"AUTH", urllib.parse.unquote(url.password).encode())
            command(conn, b"SET", b"from-worker", os.environ["STACKBLAZE_RELEASE"].encode())
            while True:
                time.sleep(0.5)
                command(conn, b"PING")
    except OSError:
        time.sleep(0.2)
"""


@pytest.fixture
def home_sb() -> Iterator[Stackblaze]:
    """Like `sb`, in a home a root daemon's server user (stackblaze-worker) can reach (`reachable_home`)."""
    for tool in ("redis-server", "postgres", "psql", "ss"):
        if shutil.which(tool) is None:
            need(tool, "backing services run the machine's own servers")
    with reachable_home("sb-backing-") as (tool, _):
        yield tool


def project(root: Path, services: str, *, worker: str = WORKER, env: str = "REDIS_URL: ${{cache.REDIS_URL}}") -> Path:
    spec = f"""\
project: acme
services:
{services}
  - name: worker
    start: python3 -u worker.py
    env:
      {env}
"""
    return write_project(root, spec, {"worker.py": worker})


REDIS = "  - {name: cache, type: redis}\n"


def service(sb: Stackblaze, name: str) -> dict[str, Any]:
    return next(s for s in sb.ps()["services"] if s["service"] == name)


def server_pid(sb: Stackblaze, name: str) -> int | None:
    replicas = service(sb, name)["replicas"]
    return replicas[0]["pid"] if replicas and replicas[0]["state"] == "running" else None


def client(sb: Stackblaze, password: str | None = None) -> Any:
    host, port = service(sb, "cache")["address"].split(":")
    return redis.Redis(host=host, port=int(port), password=password, socket_timeout=5)


def worker_env(sb: Stackblaze) -> dict[str, str]:
    pid = sb.replicas("worker")[0]["pid"]
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def pings(r: Any) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


def test_redis_serves_workers_by_reference_and_keeps_its_data_and_pid(home_sb: Stackblaze, tmp_path: Path) -> None:
    sb = home_sb
    app = project(tmp_path / "app", REDIS)
    started = time.monotonic()
    deployed = sb.run("deploy", str(app), timeout=180)
    print(f"\nfirst deploy: {time.monotonic() - started:.1f}s; "
          f"{[line for line in deployed.out.splitlines() + deployed.err.splitlines() if 'ready on' in line]}")
    cache = service(sb, "cache")
    address = cache["address"].split(":")[0]
    assert address.startswith("127.77.") and not address.startswith("127.77.0.0")
    url = worker_env(sb)["REDIS_URL"]
    print(f"the worker's REDIS_URL: {url}")
    # cache.internal where replicas get the project's hosts file here (stackblaze doctor), else the address
    assert url in (f"redis://{address}:6379", "redis://cache.internal:6379")
    with client(sb) as r:
        redis_lifecycle(sb, app, r, address)


def redis_lifecycle(sb: Stackblaze, app: Path, r: Any, address: str) -> None:
    assert wait_for("the worker's key", lambda: r.get("from-worker")) == b"1"

    pid = server_pid(sb, "cache")
    assert pid is not None
    assert Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0] != "0" or os.geteuid() != 0
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    own = [line.split()[3] for line in listening.splitlines() if f"pid={pid}," in line]
    print(f"redis pid {pid} listens on {own}")
    assert own == [f"{address}:6379"]

    r.mset({f"key:{n}": n for n in range(1000)})
    worker_pid = sb.replicas("worker")[0]["pid"]
    for n in range(3):  # three worker redeploys: a new release each time
        (app / "worker.py").write_text(WORKER + f"# change {n}\n")
        sb.run("deploy", str(app), timeout=180)
    sb.run("env", "set", "WORKER_CONCURRENCY=5", cwd=app)
    assert wait_for("a new worker", lambda: sb.replicas("worker")[0]["pid"] not in (None, worker_pid))
    assert service(sb, "worker")["release"] == 4 and service(sb, "cache")["release"] == 1
    assert server_pid(sb, "cache") == pid, "a worker deploy or env set restarted Redis"
    assert r.mget([f"key:{n}" for n in range(1000)]) == [str(n).encode() for n in range(1000)]
    starts = [e for e in sb.events("cache") if e["kind"] == "start" and e["service"] == "cache"]
    assert len(starts) == 1

    r.set("before-kill", "kept")
    time.sleep(2.2)  # appendfsync everysec: what was written 2 s before a crash is on the disk
    os.kill(pid, signal.SIGKILL)
    new_pid = wait_for("Redis restarted", lambda: (p := server_pid(sb, "cache")) not in (None, pid) and p)
    assert wait_for("Redis answers again", lambda: pings(r))
    assert r.get("before-kill") == b"kept" and r.get("key:999") == b"999"
    assert wait_for("the worker reconnected and wrote again", lambda: r.get("from-worker"))

    os.kill(sb.daemon_pid(), signal.SIGKILL)
    sb.run("daemon", "start")
    assert server_pid(sb, "cache") == new_pid, "the daemon's restart restarted Redis"
    assert pings(r) and r.get("before-kill") == b"kept" and r.dbsize() >= 1002

    stopped = sb.run("destroy", "--yes", cwd=app)
    assert "destroyed" in stopped.out
    assert wait_for("Redis stopped", lambda: not alive(psutil.Process(new_pid)) if psutil.pid_exists(new_pid)
                    else True)
    assert (sb.home / "disks" / "acme" / "cache" / "appendonlydir").is_dir(), "destroy without --disks kept the data"


def test_postgres_from_a_worker_as_a_non_root_server_stops_fast_with_an_idle_client(
        home_sb: Stackblaze, tmp_path: Path) -> None:
    sb = home_sb
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = f"""\
import os, subprocess, time
done = subprocess.run(["psql", os.environ["DATABASE_URL"], "-tAc", "select 1"], capture_output=True, text=True)
open("{markers}/psql", "w").write(f"{{done.returncode}} {{done.stdout.strip()}} {{done.stderr.strip()}}")
while True:
    time.sleep(1)
"""
    app = project(tmp_path / "app", "  - {name: db, type: postgres}\n", worker=worker,
                  env="DATABASE_URL: ${{db.DATABASE_URL}}")
    started = time.monotonic()
    sb.run("deploy", str(app), timeout=180)
    print(f"\nfirst deploy (initdb included): {time.monotonic() - started:.1f}s")
    assert wait_for("the worker's psql", lambda: (markers / "psql").exists() and (markers / "psql").read_text()) \
        == "0 1 "
    url = worker_env(sb)["DATABASE_URL"]
    assert url.startswith("postgresql://app@") and url.endswith(":5432/app")
    pid = server_pid(sb, "db")
    assert pid is not None
    uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
    print(f"postgres pid {pid} runs as uid {uid}")
    assert uid != 0

    address = service(sb, "db")["address"].split(":")[0]
    with subprocess.Popen(["psql", "-h", address, "-U", "app", "app"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as idle:
        assert idle.stdin is not None and idle.stdout is not None
        idle.stdin.write("select 'connected';\n")
        idle.stdin.flush()
        assert wait_for("the idle client's answer", lambda: "connected" in idle.stdout.readline())
        began = time.monotonic()
        sb.run("stop", "db", cwd=app, timeout=60)
        took = time.monotonic() - began
        print(f"stop db with an idle client connected: {took:.2f}s")
        assert not psutil.pid_exists(pid) or not alive(psutil.Process(pid))
        assert took < 10, f"stop took {took:.1f}s, the issue's bound is 10 s"
        idle.kill()
    sb.run("start", "db", cwd=app)
    again = wait_for("postgres back", lambda: server_pid(sb, "db"))
    done = wait_for("its data again", lambda: subprocess.run(
        ["psql", url.replace("@db.internal", f"@{address}"), "-tAc", "select datname from pg_database"],
        capture_output=True, text=True).stdout)
    assert again != pid and "app" in done.split()


def test_a_password_reaches_the_worker_and_no_output(home_sb: Stackblaze, tmp_path: Path) -> None:
    sb = home_sb
    app = project(tmp_path / "app", "  - {name: cache, type: redis, auth: password}\n")
    deployed = sb.run("deploy", str(app), timeout=180)
    url = worker_env(sb)["REDIS_URL"]
    password = url.split("://:", 1)[1].split("@", 1)[0]
    assert len(password) >= 24
    with client(sb, password) as r, client(sb) as anonymous:
        assert wait_for("the worker's key, written after AUTH", lambda: r.get("from-worker")) == b"1"
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("from-worker")
    pid = server_pid(sb, "cache")
    seen = [deployed.out, deployed.err, sb.run("ps", "--json").out, sb.run("ps").out,
            sb.run("events", "-n", "1000", "--json").out, sb.run("logs", "cache", "-n", "1000").out,
            sb.run("logs", "worker", "-n", "1000").out, sb.run("env", "list", "--json", cwd=app).out,
            Path(f"/proc/{pid}/cmdline").read_text(), (sb.home / "daemon.log").read_text()]
    assert not [text for text in seen if password in text]


def test_a_port_held_on_every_address_fails_the_deploy_naming_it(home_sb: Stackblaze, tmp_path: Path) -> None:
    sb = home_sb
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("0.0.0.0", 6379))
    except OSError as exc:
        pytest.skip(f"0.0.0.0:6379 is taken on this machine already ({exc})")
    with holder:
        holder.listen(1)
        result = sb.run("deploy", str(project(tmp_path / "app", REDIS)), check=False, timeout=180)
    message = result.err.strip().splitlines()[-1]
    print(f"\nexit {result.code}: {message}")
    assert result.code != 0
    assert "6379" in message and f"pid {os.getpid()}" in message and "0.0.0.0" in message
