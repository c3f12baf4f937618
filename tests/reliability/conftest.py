"""Reliability fixtures: the integration fixtures (real CLI, daemon and runner in a temp home), plus what
it takes to make a machine misbehave for real: a small tmpfs, an unprivileged user, a look into /proc."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Result, Stackblaze, sb, wait_for
from tests.tools import missing

__all__ = ["Result", "Stackblaze", "sb", "wait_for"]

TEST_USER = "sb-reliability"


def need(what: str, why: str) -> None:
    """Skip (or fail under CI=true, where the machine is made for these tests) when `what` is missing."""
    missing(what, why)


# -- the runner, seen from outside -----------------------------------------------------------------


def runner_socket(home: Path) -> Path:
    return home / "run" / "runner.sock"


def runner_call(home: Path, op: str, **fields: Any) -> dict[str, Any]:
    """One request to the home's runner over its socket, as the daemon makes them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(runner_socket(home)))
        sock.sendall(json.dumps({"id": 1, "op": op, **fields}).encode() + b"\n")
        buffer = b""
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise AssertionError(f"the runner closed the connection before answering {op}")
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == 1:
                    return message  # type: ignore[no-any-return]


def runner_instances(home: Path) -> list[dict[str, Any]]:
    reply = runner_call(home, "list")
    assert reply["ok"], reply
    return reply["instances"]  # type: ignore[no-any-return]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if b"=" in item)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "X"


@dataclass(frozen=True)
class Marked:
    pid: int
    instance: str  # STACKBLAZE_INSTANCE: the replica instance it belongs to
    runner: str  # STACKBLAZE_RUNNER: <runner pid>:<start>:<runner socket>
    replica: str  # STACKBLAZE_REPLICA


def marked_processes(home: Path) -> list[Marked]:
    """Every live process spawned by a runner of this home, found by the marker in its environment
    (read from /proc, not from stackblaze's state)."""
    suffix = ":" + os.path.realpath(runner_socket(home))
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or _state(int(name)) in ("Z", "X"):
            continue
        environ = _environ(int(name))
        token = environ.get("STACKBLAZE_RUNNER", "")
        if token.endswith(suffix):
            found.append(Marked(int(name), environ.get("STACKBLAZE_INSTANCE", ""), token,
                                environ.get("STACKBLAZE_REPLICA", "")))
    return found


def kill_marked(home: Path) -> None:
    for process in marked_processes(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)


# -- a small filesystem ----------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` for the block (as root; skipped where mount is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        need("mount -t tmpfs", f"these tests fill a small filesystem of their own ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # something still holds it


def fill(filesystem: Path) -> Path:
    """Write a file until the filesystem says ENOSPC; removing it gives the space back."""
    filler = filesystem / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 512, 1):  # big blocks, then what is left of the last page
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


# -- an unprivileged user --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged system user of these tests, created with useradd when missing (as root), removed after
    the run that made it. Under pytest-xdist another worker may make it at the same moment (useradd then exits
    9, "already exists") or still use it after this worker is done: there it is made once and kept."""
    if os.geteuid() != 0:
        need("root", "the test creates a user and runs stackblaze as it")
    created = False
    try:
        user = pwd.getpwnam(TEST_USER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                               TEST_USER], capture_output=True, text=True)
        assert made.returncode in (0, 9), f"useradd {TEST_USER} exited {made.returncode}: {made.stderr}"
        created = made.returncode == 0 and "PYTEST_XDIST_WORKER" not in os.environ
        user = pwd.getpwnam(TEST_USER)
    yield user
    if created:
        subprocess.run(["userdel", TEST_USER], capture_output=True)


def python_for(user: pwd.struct_passwd, pythonpath: str) -> str:
    """A Python 3.x (this minor version) that `user` may run and that imports stackblaze from here: this
    venv's when its interpreter is reachable, else the system's of the same version (a venv under a 0700
    /root is not)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}"):
        probe = subprocess.run(
            # The CLI starts the daemon, and the daemon the runner, with sys.executable: try that too.
            ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", candidate, "-c",
             "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import stackblaze.cli.app, fastapi, "
             "uvicorn'], check=True)"],
            env={"PYTHONPATH": pythonpath, "PATH": os.environ["PATH"]}, capture_output=True)
        if probe.returncode == 0:
            return candidate
    need(f"a {version} that {user.pw_name} can run", "install python3 from the distribution (apt-get install "
         "python3), or make this venv's interpreter readable by others")
    raise AssertionError("unreachable")


class UserStackblaze(Stackblaze):
    """The real CLI run as an unprivileged user (setpriv), against a home that user owns."""

    def __init__(self, home: Path, env: dict[str, str], user: pwd.struct_passwd, python: str) -> None:
        super().__init__(home=home, env=env)
        self.user = user
        self.python = python

    def command(self, *args: str) -> list[str]:
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups",
                self.python, "-m", "stackblaze.cli", *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> Result:
        proc = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, env=self.env,
                              input=stdin)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"stackblaze {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return result


@pytest.fixture
def user_sb(test_user: pwd.struct_passwd) -> Iterator[UserStackblaze]:
    """Like `sb`, but the CLI, daemon, runner and workers run as TEST_USER (so without cgroups: the
    cgroup tree is root's), in a home under /tmp that the user owns."""
    base = Path(tempfile.mkdtemp(prefix="sb-reliability-"))
    os.chown(base, test_user.pw_uid, test_user.pw_gid)
    home = base / "home"
    pythonpath = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), sysconfig.get_paths()["purelib"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": "0.01", "PYTHONPATH": pythonpath,
                "HOME": str(base)})
    tool = UserStackblaze(home, env, test_user, python_for(test_user, pythonpath))
    try:
        yield tool
    finally:
        tool.tear_down()
        kill_marked(home)
        shutil.rmtree(base, ignore_errors=True)


def write_as(user: pwd.struct_passwd, root: Path, files: dict[str, str]) -> Path:
    """Write `files` under `root`, all owned by `user`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder, _, names in os.walk(root):
        os.chown(folder, user.pw_uid, user.pw_gid)
        for name in names:
            os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid)
    return root


# -- a runner of its own, without a daemon -----------------------------------------------------------


class RunnerConnection:
    """A client of a standalone runner, speaking its JSON lines as the daemon does; keeps pushed events."""

    def __init__(self, home: Path, process: subprocess.Popen[bytes]) -> None:
        self.home = home
        self.process = process
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        try:
            self.sock.connect(str(runner_socket(home)))
        except OSError:
            self.sock.close()
            raise
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.ids = 0

    def _next(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise AssertionError("the runner closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.ids += 1
        self.sock.sendall(json.dumps({"id": self.ids, "op": op, **fields}).encode() + b"\n")
        while True:
            message = self._next()
            if message.get("id") == self.ids:
                return message
            self.events.append(message)

    def spawn(self, key: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              **fields: Any) -> dict[str, Any]:
        return self.call("spawn", key=key, argv=argv, env={"PATH": os.environ["PATH"], **(env or {})},
                         cwd=str(cwd or self.home), log_path=str(self.home / "logs" / f"{key}.log"),
                         meta={"test": key}, **fields)

    def exit_of(self, key: str, timeout: float = 20) -> dict[str, Any]:
        """The exit event the runner pushes for `key` (waits for it)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                for event in self.events:
                    if event.get("event") == "exit" and event["instance"]["key"] == key:
                        return event["instance"]  # type: ignore[no-any-return]
                self.events.append(self._next())
        finally:
            self.sock.settimeout(30)


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Any]:
    """Starts real runners (`python -m stackblaze.engine.local.runner SOCKET`), optionally under `prlimit`
    arguments; every one is shut down (or killed by pid) at the end."""
    started: list[RunnerConnection] = []
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str = "home", prlimit: list[str] | None = None) -> RunnerConnection:
        home = tmp_path / name
        (home / "run").mkdir(parents=True, exist_ok=True)
        with open(home / "runner.log", "ab") as log:
            process = subprocess.Popen(
                [*(["prlimit", *prlimit, "--"] if prlimit else []), sys.executable, "-m",
                 "stackblaze.engine.local.runner", str(runner_socket(home))],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        processes.append(process)
        # A dead runner's socket may still be there: wait until this one answers.
        connection = wait_for("the runner to answer", lambda: _connect(home, process))
        assert isinstance(connection, RunnerConnection), (home / "runner.log").read_text()
        started.append(connection)
        return connection

    yield start
    for connection in started:
        if connection.process.poll() is None:
            with contextlib.suppress(OSError, AssertionError):
                connection.call("shutdown", grace=0.5)
        connection.sock.close()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for connection in started:
        kill_marked(connection.home)


def _connect(home: Path, process: subprocess.Popen[bytes]) -> RunnerConnection | bool:
    """A connection once the runner answers; True (stop waiting) if it exited; False to wait on."""
    if process.poll() is not None:
        return True
    try:
        return RunnerConnection(home, process)
    except OSError:
        return False
