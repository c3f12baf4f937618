"""Integration fixtures: the real `stackblaze` CLI against a real daemon and runner in a temp home."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.registry import Registry, running_registry
from tests.tools import need

TIME_SCALE = "0.01"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Stackblaze:
    """Runs `stackblaze ...` as a user would, with STACKBLAZE_HOME pointing at a temp dir."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None,
            cwd: Path | None = None) -> Result:
        """`cwd`: where the user stands (commands act on that directory's project)."""
        proc = subprocess.run(
            [sys.executable, "-m", "stackblaze.cli", *args], capture_output=True, text=True,
            timeout=timeout, env=self.env, input=stdin, cwd=cwd,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"stackblaze {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return result

    def api(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """GET `path` from this home's daemon over its unix socket, in this process: what the CLI's --json prints
        (`ps --json` is this answer, `events --json` its events), for the questions tests poll. A CLI call costs
        ~0.3 s of CPU (a Python start-up): a wait_for polling it keeps one of this 2-core machine's cores busy,
        slowing the daemon and workers under test. None when no daemon answers (or a project is set in the env),
        so the caller asks the CLI, which starts the daemon as a user's command would."""
        if "STACKBLAZE_PROJECT" in self.env:
            return None
        import httpx

        transport = httpx.HTTPTransport(uds=str(self.home / "api.sock"))
        # httpcore leaves the socket of a refused unix-socket connect (a daemon just killed) unclosed; it is freed
        # as the error is handled, and its ResourceWarning would fail the test that asked (filterwarnings=error).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                with httpx.Client(transport=transport, base_url="http://stackblaze", timeout=60) as http:
                    answer = http.get(path, params={k: v for k, v in params.items() if v is not None})
            except httpx.TransportError:
                return None
        if answer.status_code != 200:
            return None  # the CLI reports the daemon's error as the user sees it
        return answer.json()  # type: ignore[no-any-return]

    def ps(self, service: str | None = None) -> dict[str, Any]:
        answer = self.api("/v1/ps", {"service": service, "all": "true"})
        if answer is not None:
            return answer
        return self.run("ps", *([service] if service else []), "--json").json()  # type: ignore[no-any-return]

    def replicas(self, service: str) -> list[dict[str, Any]]:
        return self.ps(service)["services"][0]["replicas"]  # type: ignore[no-any-return]

    def events(self, service: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        answer = self.api("/v1/events", {"service": service, "limit": limit, "all": "true"})
        if answer is not None:
            return answer["events"]  # type: ignore[no-any-return]
        args = ["events", *([service] if service else []), "-n", str(limit), "--json"]
        return [json.loads(line) for line in self.run(*args).out.splitlines() if line.strip()]

    def daemon_pid(self) -> int:
        return int(self.run("daemon", "status", "--json").json()["pid"])

    def tear_down(self) -> None:
        """Stop everything this home started: daemon, runner, workers — by force if `daemon stop --all`
        failed (the daemon first: it would start a new runner), so no test leaves a process behind."""
        self.run("daemon", "stop", "--all", check=False, timeout=120)
        for proc in psutil.process_iter(["cmdline", "environ"]):
            cmd = proc.info["cmdline"] or []
            if "stackblaze.server.daemon" in cmd and (proc.info["environ"] or {}).get("STACKBLAZE_HOME") == str(
                    self.home):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        runner = self.runner_pid()
        if runner is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(runner, signal.SIGKILL)
        for pid in instance_pids(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def runner_pid(self) -> int | None:
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if "stackblaze.engine.local.runner" in cmd and str(self.home) in " ".join(cmd):
                return proc.pid
        return None


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds. Between
    checks it sleeps `interval`, or as long as the last check took if that was longer: a check that runs a
    process (a CLI call) then takes at most half a core, not all of one, from what the test waits on."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        began = time.monotonic()
        last = check()
        if last:
            return last
        time.sleep(max(interval, time.monotonic() - began))
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def instance_pids(home: Path) -> set[int]:
    """Every live worker process of this home, found by psutil, not by our state: its cwd is a release
    under `home`, or the test put STACKBLAZE_TEST_HOME=<home> in the project env."""
    found = set()
    for proc in psutil.process_iter(["environ", "status", "cwd"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        environ = proc.info["environ"] or {}
        cwd = proc.info["cwd"] or ""
        if environ.get("STACKBLAZE_TEST_HOME") == str(home) or cwd.startswith(str(home / "releases")):
            found.add(proc.pid)
    return found


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Stackblaze]:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": TIME_SCALE})
    # Workers here write markers into the test's tmp dir, which only its (root) owner can reach: they run
    # as the daemon's user. tests/reliability/test_privileges.py runs them as the worker user.
    env["STACKBLAZE_WORKER_USER"] = "root"
    tool = Stackblaze(home=home, env=env)
    yield tool
    tool.tear_down()


@contextlib.contextmanager
def reachable_home(prefix: str) -> Iterator[tuple[Stackblaze, Path]]:
    """Like `sb`, in a home a root daemon's server user (stackblaze-worker) can reach: under a 0711 dir, not
    pytest's 0700 one; servers never run as root, workers stay root (pyenv's Python, the Celery venv's, is
    under a 0700 /root). Yields the CLI and the base dir for projects; a server the daemon lost is killed."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o711)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(base / "home"), "STACKBLAZE_TIME_SCALE": "0.01",
                "STACKBLAZE_WORKER_USER": "root"})
    tool = Stackblaze(home=base / "home", env=env)
    try:
        yield tool, base
    finally:
        tool.tear_down()
        for proc in psutil.process_iter(["cmdline"]):  # a server the daemon lost track of, if any
            if str(tool.home) in " ".join(proc.info["cmdline"] or []):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def write_project(root: Path, spec: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "stackblaze.yaml").write_text(spec)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# Worker scripts in tests start with this: `mark(name, text)` writes a marker file atomically (write, then
# rename) into $MARKERS, so a test never reads a half-written one. That is how workers report what
# happened to them (signals received, pids of their children...).
PRELUDE = """\
import os, pathlib, signal, subprocess, sys, time
MARKERS = pathlib.Path(os.environ["MARKERS"])
REPLICA = os.environ["STACKBLAZE_REPLICA"]

def mark(name, text=""):
    tmp = MARKERS / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    tmp.rename(MARKERS / name)

"""


def marker(tmp_path: Path, name: str) -> str | None:
    path = tmp_path / "markers" / name
    return path.read_text() if path.exists() else None


def alive(proc: psutil.Process) -> bool:
    """The process still exists (same pid and start time) and is not a zombie waiting to be reaped."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marker_project(tmp_path: Path, sb: Stackblaze, worker: str, *, name: str, replicas: int = 1,
                   grace: str = "100s", strategy: str = "rolling", extra: dict[str, str] | None = None) -> Path:
    """A one-service project whose worker (and extra scripts) start with PRELUDE and write markers."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    spec = f"""\
project: {name}
env:
  MARKERS: "{markers}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: worker
    type: worker
    start: python3 -u worker.py
    replicas: {replicas}
    shutdown_grace: {grace}
    strategy: {strategy}
"""
    files = {"worker.py": PRELUDE + worker}
    files.update({script: PRELUDE + text for script, text in (extra or {}).items()})
    return write_project(tmp_path / "app", spec, files)



def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server of this test's own on a free loopback port, without persistence, stopped by PID."""
    server_path = need("redis-server")
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = subprocess.Popen(
        [server_path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        wait_for("redis-server to answer", lambda: _pings(client), timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A real docker-registry of this test's own on a free 127.0.0.1 port (plain HTTP), stopped by PID."""
    with running_registry(tmp_path / "registry") as running:
        yield running


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # not listening yet
        return False
