"""Exits described by what happened, not guessed: the runner's exit record says when it was stackblaze that
killed a replica after its grace, when the kernel killed it for memory (its cgroup's oom_kill count), and
otherwise a SIGKILL came from elsewhere. describe_exit turns those facts into the words `ps` shows.

Real runners, real signals, a real out-of-memory kill in a real memory cgroup (where this machine has one).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from stackblaze.engine.exits import describe_exit, describe_exit_record
from tests.reliability.conftest import wait_for

IGNORES_TERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n" \
               "time.sleep(1e6)\n"


def up(runner: Any, key: str) -> None:
    wait_for(f"{key} to start", lambda: b"up" in (runner.home / "logs" / f"{key}.log").read_bytes())


def test_killed_after_its_grace_says_so(start_runner: Any) -> None:
    runner = start_runner()
    assert runner.spawn("stubborn", [sys.executable, "-c", IGNORES_TERM])["ok"]
    up(runner, "stubborn")
    runner.call("stop", key="stubborn", signal=int(signal.SIGTERM), grace=0.3)
    record = runner.exit_of("stubborn")
    assert record["exit_signal"] == signal.SIGKILL
    assert record["killed_after_grace"] == 0.3 and record["stop_signal"] == signal.SIGTERM
    assert describe_exit_record(record) == "did not exit within 0.3s of SIGTERM; killed"
    print(f"\n{describe_exit_record(record)}")


def test_a_replica_that_stops_in_time_was_not_killed(start_runner: Any) -> None:
    runner = start_runner()
    assert runner.spawn("polite", [sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(1e6)"])["ok"]
    up(runner, "polite")
    runner.call("stop", key="polite", signal=int(signal.SIGTERM), grace=30)
    record = runner.exit_of("polite")
    assert record["exit_signal"] == signal.SIGTERM and record["killed_after_grace"] is None
    assert describe_exit_record(record) == "SIGTERM: asked to stop"


def test_a_sigkill_from_elsewhere_is_not_blamed_on_memory(start_runner: Any) -> None:
    runner = start_runner()
    reply = runner.spawn("victim", [sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(1e6)"])
    up(runner, "victim")
    os.kill(reply["instance"]["pid"], signal.SIGKILL)
    record = runner.exit_of("victim")
    assert record["killed_after_grace"] is None and not record["oom_killed"]
    assert describe_exit_record(record) == "killed by SIGKILL (not by stackblaze)"
    assert describe_exit(code=None, sig=9) == "killed by SIGKILL (not by stackblaze)"  # the old call, too
    assert "memory" not in describe_exit(code=137, sig=None)


def mounts() -> dict[str, Path]:
    """Where the cgroup v2 tree ("") and the v1 memory tree ("memory") are mounted."""
    found = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, kind, options = line.split()[:4]
        if kind == "cgroup2":
            found.setdefault("", Path(where))
        elif kind == "cgroup" and "memory" in options.split(","):
            found.setdefault("memory", Path(where))
    return found


def memory_group(pid: int) -> tuple[Path, str] | None:
    """The replica's own memory cgroup and the file that caps it: v2 memory.max, or v1 limit_in_bytes."""
    roots = mounts()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        group = path.lstrip("/")
        if controllers == "" and "" in roots and (roots[""] / group / "memory.max").exists():
            return roots[""] / group, "memory.max"
        if "memory" in controllers.split(",") and "memory" in roots and "stackblaze-" in group:
            return roots["memory"] / group, "memory.limit_in_bytes"
    return None


GREEDY = """\
import os, time
go = os.environ["GO"]
print("up", flush=True)
while not os.path.exists(go):  # the test caps our memory first
    time.sleep(0.01)
hog = []
while True:
    hog.append(bytearray(16 << 20))
"""


def test_out_of_memory_is_said_only_when_the_kernel_says_so(start_runner: Any, tmp_path: Path) -> None:
    runner = start_runner()
    if not runner.call("list")["runner"]["oom_accounting"]:
        pytest.skip("no memory cgroup the runner may use here (cgroup v2 memory controller or v1 memory)")
    go = tmp_path / "go"
    reply = runner.spawn("greedy", [sys.executable, "-c", GREEDY], env={"GO": str(go)})
    up(runner, "greedy")
    found = memory_group(reply["instance"]["pid"])
    assert found is not None, Path(f"/proc/{reply['instance']['pid']}/cgroup").read_text()
    group, limit = found
    (group / limit).write_text(str(64 << 20))
    go.touch()
    record = runner.exit_of("greedy", timeout=60)
    assert record["exit_signal"] == signal.SIGKILL and record["oom_killed"] is True
    assert describe_exit_record(record) == "killed by the kernel: out of memory (its cgroup's oom_kill count rose)"
    print(f"\n{group}: {describe_exit_record(record)}")
