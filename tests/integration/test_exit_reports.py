"""Exits described by what happened (issue 9, item 2), as `ps` and `events` show them through the real CLI."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.integration.conftest import Stackblaze, wait_for, write_project

STUBBORN = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('working', os.getpid(), flush=True)\ntime.sleep(1e6)\n")


def deploy(sb: Stackblaze, tmp_path: Path, *, replicas: int = 1) -> None:
    app = write_project(tmp_path / "app", f"""\
project: exits
services:
  - name: worker
    start: python3 worker.py
    replicas: {replicas}
    shutdown_grace: 100s
    min_ready: 0
""", {"worker.py": STUBBORN})
    sb.run("deploy", str(app))


def test_a_kill_from_elsewhere_is_not_called_out_of_memory_and_names_pid_and_release(sb: Stackblaze,
                                                                                 tmp_path: Path) -> None:
    deploy(sb, tmp_path)
    (replica,) = sb.replicas("worker")
    os.kill(replica["pid"], signal.SIGKILL)
    again = wait_for("the restart", lambda: (r := sb.replicas("worker")[0]) and r["state"] == "running"
                     and r["pid"] != replica["pid"] and r)
    assert again["restart_count"] == 1  # a restart that happened
    assert again["last_exit"]["meaning"] == "killed by SIGKILL (not by stackblaze)"
    assert "out of memory" not in sb.run("ps").out
    exit_event = next(e for e in sb.events("worker") if e["kind"] == "exit")
    assert (exit_event["details"]["pid"], exit_event["details"]["release"]) == (replica["pid"], 1)


def test_a_replica_that_outlives_its_grace_is_said_to_have_been_killed_by_us(sb: Stackblaze,
                                                                             tmp_path: Path) -> None:
    """shutdown_grace 100 s is 1 s at time scale 0.01: the runner's SIGKILL ends it, and says why."""
    deploy(sb, tmp_path)
    sb.run("stop", "worker")
    stopped = next(e for e in sb.events("worker") if e["kind"] == "exit")
    assert "did not exit within 1s of SIGTERM; killed" in stopped["message"]


def test_a_service_at_zero_reads_stopped_and_its_events_include_the_deploy(sb: Stackblaze, tmp_path: Path) -> None:
    deploy(sb, tmp_path, replicas=1)
    sb.run("scale", "worker", "--replicas", "0")
    header = sb.run("ps").out.splitlines()[0]
    assert "stopped" in header and "0/0" not in header, header
    kinds = [e["kind"] for e in sb.events("worker")]
    assert "deploy" in kinds and "scale" in kinds  # what touched the service, project-wide events included
