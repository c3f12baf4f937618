"""Least privilege, checked from outside with real users: a root daemon runs its workers as an unprivileged
user (the default `stackblaze-worker`, or a spec's `user:`) with no_new_privs; a worker reads its release
but not the key, the database, the daemon's logs or another project's logs, writes nothing there and cannot
reach the API; a second local user can read nothing under STACKBLAZE_HOME and cannot connect to the API.
Each test prints what it checked.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import write_project
from tests.reliability.conftest import Stackblaze, kill_marked, need, wait_for

PYTHON = "/usr/bin/python3"  # one the worker user can run (a venv under a 0700 /root is not)

# The worker reports what it can and cannot do as one JSON line on stdout (it can write nowhere else).
PROBE = """\
import json, os, socket, time
home = os.environ["STACKBLAZE_TEST_HOME"]

def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return exc.strerror

def read(path):
    with open(path, "rb") as handle:
        handle.read(1)

def write(path):
    with open(path, "w") as handle:
        handle.write("x")

def connect(path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)

status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
found = {
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "no_new_privs": status.get("NoNewPrivs", "?").strip(), "cwd": os.getcwd(),
    "read release": attempt(lambda: read("probe.py")),
    "write own copy": attempt(lambda: write("written-by-worker")),
    "list home": attempt(lambda: os.listdir(home)),
    "connect api.sock": attempt(lambda: connect(os.path.join(home, "api.sock"))),
    "connect runner.sock": attempt(lambda: connect(os.path.join(home, "run", "runner.sock"))),
}
for name in ("secret.key", "state.db", "state.db-wal", "daemon.log", "runner.log", "logs/other/ticker/1.log",
             "cache/env-digest.key"):
    found["read " + name] = attempt(lambda: read(os.path.join(home, name)))
print("PROBE " + json.dumps(found), flush=True)
time.sleep(3600)
"""
TICKER = "import time\nwhile True:\n    print('secret business', flush=True)\n    time.sleep(0.2)\n"


def project(root: Path, name: str, home: Path, *, user: str | None = None, service: str = "probe",
            script: str = PROBE) -> Path:
    user_line = f"    user: {user}\n" if user else ""
    return write_project(root / name, f"""\
project: {name}
env:
  STACKBLAZE_TEST_HOME: "{home}"
services:
  - name: {service}
    start: {PYTHON} -u {service}.py
{user_line}""", {f"{service}.py": script})


def probe_result(sb: Stackblaze, name: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        out = sb.run("logs", "probe", "-n", "50", "--project", name, check=False).out
        lines = [line for line in out.splitlines() if "PROBE " in line]
        return json.loads(lines[-1].split("PROBE ", 1)[1]) if lines else None
    result: dict[str, Any] = wait_for(f"{name}'s worker to report", found, timeout=60)
    return result


def need_root() -> None:
    if os.geteuid() != 0:
        need("root", "only a daemon that runs as root switches its workers to another user")
    if not Path(PYTHON).exists():
        need(f"{PYTHON} (apt-get install python3)", "the worker user cannot run this venv's Python")


@pytest.fixture
def root_sb() -> Iterator[Stackblaze]:
    """Like `sb`, as root, with its workers on the default worker user (the integration tests pin them to
    root), in a home the workers can reach: under a 0711 directory, not pytest's 0700 one."""
    need_root()
    base = Path(tempfile.mkdtemp(prefix="sb-privileges-"))
    base.chmod(0o711)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(base / "home"), "STACKBLAZE_TIME_SCALE": "0.01"})
    tool = Stackblaze(home=base / "home", env=env)
    try:
        yield tool
    finally:
        tool.tear_down()
        kill_marked(tool.home)
        shutil.rmtree(base, ignore_errors=True)


def mode(path: Path) -> str:
    info = path.lstat()
    return f"{stat.S_IMODE(info.st_mode):04o} {pwd.getpwuid(info.st_uid).pw_name}:{grp.getgrgid(info.st_gid).gr_name}"


def test_workers_run_unprivileged_and_reach_only_their_release(root_sb: Stackblaze, tmp_path: Path) -> None:
    sb = root_sb
    sb.run("deploy", str(project(tmp_path, "other", sb.home, service="ticker", script=TICKER)), timeout=120)
    sb.run("env", "set", "TOKEN", "--secret", "--project", "other", stdin="s3cret\n")
    sb.run("deploy", str(project(tmp_path, "mine", sb.home)), timeout=120)
    worker = pwd.getpwnam("stackblaze-worker")
    result = probe_result(sb, "mine")
    print("\nworker:", json.dumps(result, indent=1))
    assert worker.pw_shell == "/usr/sbin/nologin"
    assert (result["uid"], result["euid"], result["gid"]) == (worker.pw_uid, worker.pw_uid, worker.pw_gid)
    assert 0 not in result["groups"]
    assert result["no_new_privs"] == "1"
    assert result["read release"] == "allowed"
    assert result["write own copy"] == "allowed"  # its working directory is its own copy of the release
    for check, outcome in result.items():
        if check.startswith(("read ", "write ", "list ", "connect ")) and check not in ("read release",
                                                                                        "write own copy"):
            assert outcome != "allowed", f"a worker could {check}"
    copy = Path(result["cwd"])
    assert mode(copy) == "0700 stackblaze-worker:stackblaze-worker", mode(copy)
    tree = Path(sb.run("releases", "probe", "--json", "--project", "mine").json()["releases"][0]["path"])
    print("release tree:", mode(tree), "| probe.py:", mode(tree / "probe.py"), "| replica's copy:", mode(copy))
    assert not (stat.S_IMODE(tree.stat().st_mode) & 0o022), "the release is writable by others than root"
    assert tree.stat().st_uid == 0 and not (tree / "written-by-worker").exists()


def test_the_home_is_private_and_tightened_on_start(root_sb: Stackblaze, tmp_path: Path) -> None:
    sb = root_sb
    sb.run("deploy", str(project(tmp_path, "other", sb.home, service="ticker", script=TICKER)), timeout=120)
    sb.run("env", "set", "TOKEN", "--secret", "--project", "other", stdin="s3cret\n")
    daemon = sb.daemon_pid()
    sb.run("daemon", "stop")  # the workers stay; loosen what an older version or a umask would have left
    wait_for("the old daemon to exit", lambda: not Path(f"/proc/{daemon}").exists())
    for path in (sb.home, sb.home / "logs", sb.home / "state.db", sb.home / "daemon.log"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    for log in (sb.home / "logs").rglob("*.log"):
        log.chmod(0o644)
    sb.run("ps")  # starts the daemon again
    expected = {
        sb.home: 0o710, sb.home / "state.db": 0o600, sb.home / "state.db-wal": 0o600,
        sb.home / "state.db-shm": 0o600, sb.home / "secret.key": 0o600, sb.home / "daemon.log": 0o600,
        sb.home / "api.sock": 0o600, sb.home / "run": 0o700, sb.home / "logs": 0o700,
        sb.home / "logs" / "other" / "ticker": 0o700, sb.home / "logs" / "other" / "ticker" / "1.log": 0o600,
    }
    print()
    for path, wanted in expected.items():
        print(f"{mode(path)}  {path.relative_to(sb.home.parent)}")
        assert stat.S_IMODE(path.lstat().st_mode) == wanted, path
    assert grp.getgrgid(sb.home.stat().st_gid).gr_name == "stackblaze-worker"


def test_a_second_user_can_read_nothing_and_not_reach_the_api(root_sb: Stackblaze, tmp_path: Path,
                                                             test_user: pwd.struct_passwd) -> None:
    sb = root_sb
    sb.run("deploy", str(project(tmp_path, "other", sb.home, service="ticker", script=TICKER)), timeout=120)
    sb.run("env", "set", "TOKEN", "--secret", "--project", "other", stdin="s3cret\n")
    wait_for("a log line", lambda: any((sb.home / "logs").rglob("*.log")))
    paths = [str(sb.home), *(str(p) for p in sb.home.rglob("*"))]
    attempt = """\
import json, os, socket, sys
denied, allowed = 0, []
for path in json.load(sys.stdin):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        elif path.endswith(".sock"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
        allowed.append(path)
    except OSError:
        denied += 1
print(json.dumps({"denied": denied, "allowed": allowed}))
"""
    done = subprocess.run(["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--clear-groups",
                           PYTHON, "-c", attempt], input=json.dumps(paths), capture_output=True, text=True,
                          timeout=60, check=True)
    seen = json.loads(done.stdout)
    print(f"\n{test_user.pw_name} (uid {test_user.pw_uid}): {seen['denied']} of {len(paths)} paths under the home "
          f"denied (listing, reading, connecting to api.sock); allowed: {seen['allowed']}")
    assert seen["allowed"] == []
    cli = subprocess.run(["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--clear-groups",
                          PYTHON, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                          str(sb.home / "api.sock")], capture_output=True, text=True, timeout=30)
    print(f"connect to api.sock as {test_user.pw_name}: exit {cli.returncode}: {cli.stderr.strip().splitlines()[-1]}")
    assert cli.returncode != 0 and "Permission denied" in cli.stderr


def test_a_spec_user_is_used_and_checked_at_deploy(root_sb: Stackblaze, tmp_path: Path,
                                                   test_user: pwd.struct_passwd) -> None:
    sb = root_sb
    missing = sb.run("deploy", str(project(tmp_path, "ghost", sb.home, user="no-such-user-sb")), check=False)
    print(f"\nuser: no-such-user-sb -> exit {missing.code}: {missing.err.strip().splitlines()[-1]}")
    assert missing.code == 2 and "'no-such-user-sb' does not exist" in missing.err
    sb.run("env", "set", "TOKEN", "--secret", "--project", "mine", stdin="s3cret\n")
    sb.run("deploy", str(project(tmp_path, "mine", sb.home, user=test_user.pw_name)), timeout=120)
    result = probe_result(sb, "mine")
    shared = grp.getgrnam("stackblaze-worker").gr_gid
    print(f"user: {test_user.pw_name} -> uid {result['uid']} groups {result['groups']} no_new_privs "
          f"{result['no_new_privs']}; read release: {result['read release']}; read secret.key: "
          f"{result['read secret.key']}")
    assert result["uid"] == test_user.pw_uid and shared in result["groups"] and result["no_new_privs"] == "1"
    assert result["read release"] == "allowed" and result["read secret.key"] == "Permission denied"


def test_a_home_the_workers_cannot_reach_is_refused_at_deploy(sb: Stackblaze, tmp_path: Path) -> None:
    """pytest's 0700 base directory stands for a root home under a 0700 /root."""
    need_root()
    sb.env.pop("STACKBLAZE_WORKER_USER", None)
    result = sb.run("deploy", str(project(tmp_path, "mine", sb.home)), check=False, timeout=120)
    print(f"\nhome under a 0700 directory -> exit {result.code}: {result.err.strip().splitlines()[-1]}")
    assert result.code == 2 and "cannot reach" in result.err and "STACKBLAZE_HOME=/var/lib/stackblaze" in result.err


def test_a_worker_imports_from_its_dependency_layer(root_sb: Stackblaze, tmp_path: Path) -> None:
    """A real pip install (six from PyPI, as the build tests do) into a venv made by the system's python3
    (the deploying CLI's PATH decides which: a venv of a Python under /root is out of the worker's reach)."""
    sb = root_sb
    sb.env["PATH"] = "/usr/bin:/bin"
    app = tmp_path / "deps"  # a Procfile project named after its directory
    app.mkdir()
    (app / "requirements.txt").write_text("six==1.16.0\n")
    (app / "Procfile").write_text("worker: python worker.py\n")
    (app / "worker.py").write_text("import os, six, time\nprint('SIX', six.__file__, os.getuid(), flush=True)\n"
                                   "time.sleep(3600)\n")
    sb.run("deploy", str(app), timeout=300)

    def imported() -> list[str] | None:
        out = sb.run("logs", "worker", "-n", "20", "--project", "deps", check=False).out
        found = [line.split("SIX ", 1)[1].split() for line in out.splitlines() if "SIX " in line]
        return found[-1] if found else None
    path, uid = wait_for("the worker to import six", imported, timeout=60)
    layer = Path(path).parents[4]
    print(f"\nworker uid {uid} imported six from {path}; layer {mode(layer)}")
    assert int(uid) == pwd.getpwnam("stackblaze-worker").pw_uid
    assert str(layer).startswith(str(sb.home / "cache" / "deps"))
    assert not stat.S_IMODE(layer.stat().st_mode) & 0o022
