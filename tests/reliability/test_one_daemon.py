"""One daemon per home, always: a second one refuses to start, and a stopped (SIGSTOP) daemon makes the CLI
fail fast naming its PID, never hang and never start a second daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from stackblaze.cli.client import CONNECT_TIMEOUT, STATUS_TIMEOUT
from tests.integration.conftest import Stackblaze, wait_for, write_project

SPEC = """\
project: shop
services:
  - name: worker
    start: python3 -u -c "import time; time.sleep(1e6)"
"""


def daemons(home: Path) -> list[int]:
    """Every live daemon process of this home, found by psutil (its command and its STACKBLAZE_HOME)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"]):
        cmd = proc.info["cmdline"] or []
        if "stackblaze.server.daemon" in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE and \
                (proc.info["environ"] or {}).get("STACKBLAZE_HOME") == str(home):
            found.append(proc.pid)
    return found


def test_a_second_daemon_refuses_and_leaves_the_lock_to_the_first(sb: Stackblaze) -> None:
    pid = int(sb.run("daemon", "start", "--json").json()["pid"])
    lock = sb.home / "run" / "daemon.lock"
    assert lock.read_text().strip() == str(pid)
    second = subprocess.run([sys.executable, "-m", "stackblaze.server.daemon"], env=sb.env, capture_output=True,
                            text=True, timeout=30)
    print(f"second daemon: exit {second.returncode}: {second.stderr.strip()}")
    assert second.returncode == 1
    assert f"already running (pid {pid} holds {lock})" in second.stderr
    assert lock.read_text().strip() == str(pid), "the loser truncated the winner's PID"
    assert daemons(sb.home) == [pid]
    assert sb.run("daemon", "status", "--json").json()["pid"] == pid


def test_a_stopped_daemon_gets_a_one_line_error_in_time_and_no_second_daemon(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC)))
    pid = sb.daemon_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = sb.run("ps", check=False, timeout=STATUS_TIMEOUT + CONNECT_TIMEOUT + 30)
        took = time.monotonic() - started
        print(f"ps against a stopped daemon: exit {result.code} after {took:.1f}s: {result.err.strip()}")
        assert result.code == 4
        assert result.err.strip() == (f"error: the daemon (pid {pid}) is not answering on {sb.home / 'api.sock'}; "
                                      f"see {sb.home / 'daemon.log'}")
        assert took < STATUS_TIMEOUT + 10
        # Another command meanwhile, and still no second daemon: the lock is held.
        assert sb.run("daemon", "status", check=False, timeout=60).code == 4
        assert daemons(sb.home) == [pid]
        assert (sb.home / "run" / "daemon.lock").read_text().strip() == str(pid)
    finally:
        os.kill(pid, signal.SIGCONT)
    replicas = wait_for("ps to answer again", lambda: sb.replicas("worker"), timeout=30)
    assert [r["state"] for r in replicas] == ["running"]
    assert sb.daemon_pid() == pid
    assert daemons(sb.home) == [pid]
