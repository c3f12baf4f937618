"""Two homes on one machine: a runner cleans up only after its own home's dead runner. And the parts of
that clean-up, one at a time: the parent-death signal takes the replica's main process at once; what it
does not reach (a double-forked helper) goes when the next runner of the home starts.

Real runners, started directly (no daemon), as root: each replica also has its own cgroup.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import psutil

from tests.integration.conftest import alive
from tests.reliability.conftest import marked_processes, wait_for

WITH_HELPER = """\
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "100000"])
    os._exit(0)
print("up", flush=True)
time.sleep(1e6)
"""


def start_replicas(runner: Any, count: int) -> dict[str, int]:
    pids = {}
    for n in range(count):
        reply = runner.spawn(f"r{n}", [sys.executable, "-c", WITH_HELPER])
        assert reply["ok"], reply
        pids[f"r{n}"] = reply["instance"]["pid"]
    wait_for("every replica and its helper", lambda: len(marked_processes(runner.home)) == 2 * count)
    return pids


def test_a_new_runner_cleans_up_after_its_own_home_only(start_runner: Any) -> None:
    a, b = start_runner("a"), start_runner("b")
    a_mains, b_mains = start_replicas(a, 3), start_replicas(b, 3)
    a_all = [psutil.Process(p.pid) for p in marked_processes(a.home)]
    b_all = {p.pid for p in marked_processes(b.home)}

    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    wait_for("A's main processes to die with their runner (PDEATHSIG)", lambda: not any(
        alive(psutil.Process(pid)) for pid in a_mains.values() if psutil.pid_exists(pid)))
    helpers = [p for p in a_all if p.pid not in a_mains.values()]
    assert len(helpers) == 3 and all(alive(p) for p in helpers)  # out of PDEATHSIG's reach until...

    a2 = start_runner("a")  # ...the home's next runner starts
    wait_for("A's helpers to be swept", lambda: not any(alive(p) for p in helpers))
    assert not marked_processes(a.home)
    assert {p.pid for p in marked_processes(b.home)} == b_all  # home B untouched
    assert all(i["state"] == "running" for i in b.call("list")["instances"])
    assert "killed what a dead runner left" in (a2.home / "runner.log").read_text()
    print(f"\nhome A's runner killed: {len(a_mains)} replicas died with it, {len(helpers)} helpers swept by the "
          f"next runner; home B: {len(b_mains)} replicas and helpers untouched ({len(b_all)} processes)")


def test_one_runner_per_home(start_runner: Any) -> None:
    """A second runner for a home refuses (exit 1, saying why) and leaves the first one serving."""
    first = start_runner("solo")
    second = subprocess.run([sys.executable, "-m", "stackblaze.engine.local.runner",
                             str(first.home / "run" / "runner.sock")], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "another runner holds" in second.stderr
    assert first.call("list")["ok"] and first.process.poll() is None
