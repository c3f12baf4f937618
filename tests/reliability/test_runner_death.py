"""`kill -9` of the runner, five times in a row, with cgroups (as root) and without (as an unprivileged user,
who cannot write the cgroup tree): no process of a replica outlives it (not even a double-forked helper in
its own session), no replica runs twice, and every replica is back within a second each time.

Processes are counted from /proc by the marker in their environment, not from stackblaze's own state.
That a runner death is not counted as the workers' crash (their back-off does not grow) is the daemon's
side of the contract (Supervisor.handle_runner_lost); the test checks it by the delay of a real crash after.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from tests.integration.conftest import alive, write_project
from tests.reliability.conftest import (
    Marked,
    Stackblaze,
    UserStackblaze,
    marked_processes,
    runner_call,
    runner_instances,
    wait_for,
    write_as,
)

REPLICAS = 3
KILLS = 5

# The worker leaves a grandchild in a session of its own (fork, setsid, fork: a daemon's double fork),
# which neither the process group nor a parent-death signal reaches.
WORKER = """\
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "100000"])
    os._exit(0)
while True:
    time.sleep(60)
"""

SPEC = f"""\
project: immortal
services:
  - name: worker
    start: python3 -u worker.py
    replicas: {REPLICAS}
"""


def settled(sb: Stackblaze, runner: int | None) -> dict[str, Any] | None:
    """Once a runner other than `runner` runs every replica with its helper and nothing else of this home
    runs: the replicas by number, the processes, and the runner's facts."""
    if sb.runner_pid() in (None, runner):
        return None
    reply = runner_call(sb.home, "list")
    live = [i for i in reply["instances"] if i["state"] == "running"]
    processes = marked_processes(sb.home)
    if len(live) != REPLICAS or len(processes) != 2 * REPLICAS:
        return None
    if Counter(p.instance for p in processes) != Counter({i["key"]: 2 for i in live}):
        return None
    return {"replicas": {i["meta"]["replica"]: i["pid"] for i in live}, "processes": processes,
            "runner": reply["runner"]}


def back(sb: Stackblaze, old: set[int]) -> bool:
    """Every replica runs again under the new runner (its main process is up; helpers may follow)."""
    try:
        live = [i for i in runner_instances(sb.home) if i["state"] == "running" and i["pid"] not in old]
    except (OSError, AssertionError):
        return False
    return len(live) == REPLICAS


def kill_the_runner_five_times(sb: Stackblaze, project: Path, *, cgroups: bool) -> None:
    sb.run("deploy", str(project))
    state = wait_for("every replica and its helper", lambda: settled(sb, None))
    assert state["runner"]["cgroups"] is cgroups and state["runner"]["pdeathsig"]
    times, orphans, duplicates = [], 0, 0
    for _ in range(KILLS):
        runner = sb.runner_pid()
        assert runner is not None
        doomed = [psutil.Process(p.pid) for p in state["processes"]]
        old = {p.pid for p in state["processes"]}

        os.kill(runner, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for("every replica back", lambda old=old: back(sb, old), interval=0.01)
        times.append(time.monotonic() - killed_at)

        state = wait_for("every replica and its helper under the new runner", lambda runner=runner: settled(sb, runner))
        left: list[Marked] = [p for p in marked_processes(sb.home) if p.pid in old]
        orphans += len(left) + sum(alive(p) for p in doomed)
        duplicates += sum(n - 1 for n in Counter(p.replica for p in state["processes"]
                                                 if p.pid in state["replicas"].values()).values())
    shown = sb.replicas("worker")
    assert all(r["state"] == "running" for r in shown)
    assert {r["replica"]: r["pid"] for r in shown} == state["replicas"]

    # Not the workers' crash: a real crash now is restarted at once, as a first crash is. Had the five
    # runner deaths counted, it would be the sixth in a row and wait 160 s x the time scale (1.6 s here).
    victim = state["replicas"][1]
    os.kill(victim, signal.SIGKILL)
    crashed_at = time.monotonic()
    wait_for("replica 1 back after a real crash", lambda: any(
        i["meta"]["replica"] == 1 and i["state"] == "running" and i["pid"] != victim
        for i in runner_instances(sb.home)), interval=0.01)
    crash_restart = time.monotonic() - crashed_at

    kind = "with cgroups, as root" if cgroups else "without cgroups, as an unprivileged user"
    print(f"\nrunner kill -9 x{KILLS} {kind}: {REPLICAS} replicas (+1 double-forked helper each); "
          f"orphans {orphans}, duplicates {duplicates}; replicas back after "
          f"{', '.join(f'{t * 1000:.0f}' for t in times)} ms; then a real crash restarted after "
          f"{crash_restart * 1000:.0f} ms (restarts shown by ps: {[r['restart_count'] for r in shown]})")
    assert orphans == 0 and duplicates == 0
    assert max(times) < 1.0, times
    assert crash_restart < 0.5, f"a crash after {KILLS} runner deaths waited {crash_restart:.2f}s: they were counted"


def test_runner_kill_9_with_cgroups(sb: Stackblaze, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", SPEC, {"worker.py": WORKER})
    kill_the_runner_five_times(sb, project, cgroups=True)


def test_runner_kill_9_without_cgroups_as_an_unprivileged_user(user_sb: UserStackblaze) -> None:
    project = write_as(user_sb.user, user_sb.home.parent / "app", {"stackblaze.yaml": SPEC, "worker.py": WORKER})
    kill_the_runner_five_times(user_sb, project, cgroups=False)
