"""A non-root daemon (uid 65534, started from root with setpriv, as CI runs as root) with a backing Redis and a
Python worker: the daemon's probe picks the unprivileged user namespace (`doctor`), the worker, as 65534, resolves
the literal cache.internal (REDIS_URL is the reference's expansion) and processes 100/100 jobs counted in Redis;
the server runs as 65534 too, on its 127.77.x.y address only; the host's /etc/hosts is untouched.

Where user namespaces are blocked the daemon cannot give names: the second test runs the same project with the
daemon in a user namespace of its own where user.max_user_namespaces=0 (the sysctl is per user namespace, so this
machine's, which allows them, is untouched): `doctor` says why, REDIS_URL is the IP form and the worker still
gets its 100 jobs. tests/integration/test_doctor.py (the doctor message alone) and
tests/integration/test_internal_names.py (test_probe_says_why_when_user_namespaces_are_disabled) cover the rest.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from tests.e2e.internal.conftest import etc_hosts_digest
from tests.e2e.internal.shop import getent, listeners
from tests.integration.conftest import Result, wait_for
from tests.integration.test_internal_names import NOBODY, python_for_nobody

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(os.geteuid() != 0, reason="starts a daemon as uid 65534 with setpriv (CI is root)")]

SPEC = """\
project: nonroot
services:
  - {name: cache, type: redis}
  - name: worker
    start: python3 -u worker.py
    env:
      REDIS_URL: ${{cache.REDIS_URL}}
"""
# Raw RESP over the standard library: the worker runs on the system python3, which has no redis package.
WORKER = """\
import os, socket, time, urllib.parse

def command(conn, reader, *words):
    conn.sendall(b"".join([b"*%d\\r\\n" % len(words)] + [b"$%d\\r\\n%s\\r\\n" % (len(w), w) for w in words]))
    return reply(reader)

def reply(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"$":
        return None if int(body) < 0 else reader.read(int(body) + 2)[:-2]
    if kind == b"*":
        return None if int(body) < 0 else [reply(reader) for _ in range(int(body))]
    if kind == b"-":
        raise RuntimeError(body.decode())
    return body

url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
while True:
    try:
        address = socket.getaddrinfo(url.hostname, url.port, proto=socket.IPPROTO_TCP)[0][4][0]
        with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
            reader = conn.makefile("rb")
            command(conn, reader, b"SET", b"worker:seen", f"{os.getuid()} {address}".encode())
            while True:
                job = command(conn, reader, b"BRPOP", b"py:jobs", b"1")
                if job:
                    command(conn, reader, b"SADD", b"py:done", job[1])
    except (OSError, ConnectionError) as exc:
        print(f"cache.internal: {exc}; again", flush=True)
        time.sleep(0.2)
"""


class NobodyCli:
    """The real CLI as uid 65534 on the system python3 (this venv's python is under a 0700 /root), with the
    venv's packages and our src on PYTHONPATH; the daemon it starts is 65534's too."""

    def __init__(self, base: Path) -> None:
        self.home = base / "home"
        self.python = python_for_nobody()
        src = str(Path(__file__).resolve().parents[3] / "src")
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8",
                    "STACKBLAZE_HOME": str(self.home), "STACKBLAZE_TIME_SCALE": "0.01",
                    "PYTHONPATH": os.pathsep.join([src, sysconfig.get_paths()["purelib"]])}

    def run(self, *args: str, cwd: Path, check: bool = True, timeout: float = 120) -> Result:
        done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", self.python,
                               "-m", "stackblaze.cli", *args], capture_output=True, text=True, env=self.env,
                              cwd=cwd, timeout=timeout)
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            logs = "".join(f"\n--- {path.name}:\n{path.read_text()[-3000:]}" for path in
                           (self.home / "daemon.log", self.home / "daemon.out") if path.exists())
            raise AssertionError(f"stackblaze {' '.join(args)} as {NOBODY} exited {done.returncode}:\n"
                                 f"{done.stderr}{done.stdout}{logs}")
        return result

    def run_blocked(self, *args: str, cwd: Path, timeout: float = 120) -> Result:
        """The CLI (and so the daemon it starts) in a user namespace of its own where user.max_user_namespaces=0,
        as tests/integration/test_doctor.py does: the sysctl is per user namespace, the machine's stays as it is.
        The maps are written from here (root may map two uids); the child waits for them, then sets the sysctl
        and drops to 65534."""
        inner = (f"echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid {NOBODY} --regid {NOBODY} "
                 f"--clear-groups {self.python} -m stackblaze.cli {shlex.join(args)}")
        with subprocess.Popen(["unshare", "--user", "sh", "-c", 'read _ && exec sh -c "$0"', inner],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=self.env, cwd=cwd) as process:
            ours = os.readlink("/proc/self/ns/user")
            wait_for("unshare to enter its user namespace",
                     lambda: os.readlink(f"/proc/{process.pid}/ns/user") != ours)
            for kind in ("uid", "gid"):
                Path(f"/proc/{process.pid}/{kind}_map").write_text(f"0 0 1\n{NOBODY} {NOBODY} 1\n")
            out, err = process.communicate("\n", timeout=timeout)
        assert process.returncode == 0, f"stackblaze {' '.join(args)} exited {process.returncode}:\n{err}{out}"
        return Result(process.returncode, out, err)

    def left_behind(self) -> list[psutil.Process]:
        """Processes of this home still alive: by their cwd (a release, a server's disk) or their command line."""
        found = []
        for proc in psutil.process_iter(["cmdline", "cwd", "uids"]):
            if proc.info["uids"] is None or proc.info["uids"].real != NOBODY:
                continue
            if str(self.home) in " ".join(proc.info["cmdline"] or []) or (proc.info["cwd"] or "").startswith(
                    str(self.home)):
                found.append(proc)
        return found


@pytest.fixture
def nobody() -> Iterator[tuple[NobodyCli, Path]]:
    base = Path(tempfile.mkdtemp(prefix="sb-nonroot-"))
    base.chmod(0o711)
    app = base / "app"
    app.mkdir()
    (app / "stackblaze.yaml").write_text(SPEC)
    (app / "worker.py").write_text(WORKER)
    for path in (base, app, *app.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    cli = NobodyCli(base)
    try:
        yield cli, app
    finally:
        cli.run("daemon", "stop", "--all", cwd=app, check=False)
        for proc in cli.left_behind():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def test_a_non_root_daemon_gives_its_worker_cache_internal_by_user_namespace(nobody: tuple[NobodyCli, Path]) -> None:
    cli, app = nobody
    hosts_before = etc_hosts_digest()
    started = time.monotonic()
    cli.run("deploy", cwd=app)
    print(f"\nas uid {NOBODY}: deployed in {time.monotonic() - started:.1f}s")
    doctor = {c["name"]: c for c in cli.run("doctor", "--json", cwd=app, check=False).json()["checks"]}
    assert doctor["internal hostnames"]["mode"] == "userns", doctor["internal hostnames"]

    services = {s["service"]: s for s in cli.run("ps", "--json", cwd=app).json()["services"]}
    address = services["cache"]["address"].rsplit(":", 1)[0]
    server, worker = (services[name]["replicas"][0]["pid"] for name in ("cache", "worker"))
    assert {name: _uid(pid) for name, pid in (("daemon", _daemon_pid(cli)), ("cache", server), ("worker", worker))} \
        == dict.fromkeys(("daemon", "cache", "worker"), NOBODY)
    assert _environ(worker)["REDIS_URL"] == "redis://cache.internal:6379"
    assert getent(worker, "cache.internal") == address  # its own view, by its mount namespace
    assert [local for local, pid in listeners(6379) if pid == server] == [address]

    r = redis.Redis(host=address, port=6379, decode_responses=True, socket_timeout=10)
    assert wait_for("the worker's connection", lambda: r.get("worker:seen"), timeout=30) == f"{NOBODY} {address}"
    ids = [f"py-{n}" for n in range(1, 101)]
    began = time.monotonic()
    r.lpush("py:jobs", *ids)
    wait_for("100 jobs done", lambda: all(r.smismember("py:done", ids)), timeout=60, interval=0.1)
    print(f"as uid {NOBODY}: 100/100 jobs through cache.internal ({address}) in {time.monotonic() - began:.1f}s")
    assert getent(None, "cache.internal") is None
    assert etc_hosts_digest() == hosts_before


def _uid(pid: int) -> int:
    return int(psutil.Process(pid).uids().real)


def _environ(pid: int) -> dict[str, str]:
    return {str(k): str(v) for k, v in psutil.Process(pid).environ().items()}


def _daemon_pid(cli: NobodyCli) -> int:
    return int(cli.run("daemon", "status", "--json", cwd=Path("/")).json()["pid"])


def test_where_user_namespaces_are_blocked_doctor_says_why_and_the_url_is_the_address(
        nobody: tuple[NobodyCli, Path]) -> None:
    cli, app = nobody
    cli.run_blocked("deploy", cwd=app)
    names = {c["name"]: c for c in cli.run("doctor", "--json", cwd=app, check=False).json()["checks"]}[
        "internal hostnames"]
    print(f"\ndoctor: {names['summary']}")
    assert names["status"] == "fail" and names["mode"] is None
    assert names["summary"].startswith("unavailable: unprivileged user namespaces are disabled "
                                       "(user.max_user_namespaces=0); ${{service.URL}} references fall back to IP URLs")

    services = {s["service"]: s for s in cli.run("ps", "--json", cwd=app).json()["services"]}
    address = services["cache"]["address"].rsplit(":", 1)[0]
    worker = services["worker"]["replicas"][0]["pid"]
    assert _uid(worker) == NOBODY
    assert _environ(worker)["REDIS_URL"] == f"redis://{address}:6379"  # the IP form of the same reference
    assert getent(worker, "cache.internal") is None  # no hosts file in its namespace: the host's view
    r = redis.Redis(host=address, port=6379, decode_responses=True, socket_timeout=10)
    assert wait_for("the worker's connection", lambda: r.get("worker:seen"), timeout=30) == f"{NOBODY} {address}"
    ids = [f"py-{n}" for n in range(1, 101)]
    r.lpush("py:jobs", *ids)
    wait_for("100 jobs done", lambda: all(r.smismember("py:done", ids)), timeout=60, interval=0.1)
    print(f"user namespaces blocked: REDIS_URL redis://{address}:6379, 100/100 jobs")
