"""The daemon can be killed (-9) at any time: workers keep running under the runner, no log line is lost,
and the next command starts a daemon that adopts the workers, keeps their restart counts and hears of every
exit that happened while it was down.

Workers report what happened to them through marker files in the test's tmp dir (env MARKERS).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from tests.integration.conftest import Stackblaze, alive, marker, marker_project, wait_for


def project(tmp_path: Path, sb: Stackblaze, worker: str, *, replicas: int = 2) -> Path:
    return marker_project(tmp_path, sb, worker, name="crashy", replicas=replicas)


def running(sb: Stackblaze, count: int) -> dict[int, dict[str, Any]] | None:
    """Replicas by number, once exactly `count` are running."""
    replicas = sb.replicas("worker")
    if len(replicas) == count and all(r["state"] == "running" for r in replicas):
        return {r["replica"]: r for r in replicas}
    return None


def kill_daemon(sb: Stackblaze) -> None:
    """`kill -9` the daemon and wait until it is really gone (without asking the CLI, which would start it)."""
    daemon = psutil.Process(sb.daemon_pid())
    daemon.send_signal(signal.SIGKILL)
    wait_for("the daemon to die", lambda: not alive(daemon), timeout=10)


COUNTER = """\
stopping = False

def on_term(*_):
    global stopping
    stopping = True

signal.signal(signal.SIGTERM, on_term)
mark(f"pid-{REPLICA}", str(os.getpid()))
i = 0
began = time.monotonic()
while not stopping:
    # 1,000 numbered lines a second, in batches of 10: one write each, so no line is ever torn
    os.write(1, "".join(f"{REPLICA} {n}\\n" for n in range(i, i + 10)).encode())
    i += 10
    if i % 100 == 0:
        mark(f"count-{REPLICA}", str(i))
    delay = began + i / 1000 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def count(tmp_path: Path, replica: int) -> int:
    return int(marker(tmp_path, f"count-{replica}") or 0)


def test_kill_9_of_the_daemon_keeps_workers_and_loses_no_log_line(sb: Stackblaze, tmp_path: Path) -> None:
    """`kill -9` of the daemon while two replicas print 1,000 lines a second: the next `stackblaze ps`
    shows the same worker processes under the same runner, and after `stop` the log holds every line of
    each replica exactly once, in order, including those printed while the daemon was dead."""
    sb.run("deploy", str(project(tmp_path, sb, COUNTER)))
    before = wait_for("2 running replicas", lambda: running(sb, 2))
    wait_for("both replicas printing", lambda: count(tmp_path, 1) >= 300 and count(tmp_path, 2) >= 300)
    procs = {n: psutil.Process(before[n]["pid"]) for n in (1, 2)}
    assert {n: int(marker(tmp_path, f"pid-{n}") or 0) for n in (1, 2)} == {n: p.pid for n, p in procs.items()}
    runner = sb.runner_pid()
    assert runner is not None

    kill_daemon(sb)
    at_kill = {n: count(tmp_path, n) for n in (1, 2)}
    wait_for("~1 s of output while the daemon is dead",
             lambda: all(count(tmp_path, n) >= at_kill[n] + 1000 for n in (1, 2)), timeout=15)
    while_dead = {n: count(tmp_path, n) for n in (1, 2)}

    after = running(sb, 2)  # this `ps` starts a new daemon
    assert after is not None, sb.ps()
    assert {n: r["pid"] for n, r in after.items()} == {n: p.pid for n, p in procs.items()}, "workers were replaced"
    assert all(alive(p) for p in procs.values()), "a worker died with the daemon"
    assert all(r["restart_count"] == 0 for r in after.values())
    assert sb.runner_pid() == runner, "the runner was replaced"

    sb.run("stop", "worker")

    records = [line for line in sb.run("logs", "worker", "-n", "100000", "--json").out.splitlines() if line]
    numbers: dict[int, list[int]] = {1: [], 2: []}
    for record in map(json.loads, records):
        assert record["service"] == "worker"
        assert not record.get("partial"), record
        replica, number = record["line"].split()
        assert int(replica) == record["replica"], record
        numbers[record["replica"]].append(int(number))
    for n in (1, 2):
        got = numbers[n]
        assert got and got[-1] + 1 >= while_dead[n], f"replica {n}: log ends before line {while_dead[n]}"
        expected = list(range(got[-1] + 1))
        missing = sorted(set(expected) - set(got))
        dupes = len(got) - len(set(got))
        assert got == expected, (
            f"replica {n}: {len(got)} lines up to {got[-1]}: {len(missing)} missing (first: {missing[:10]}), "
            f"{dupes} duplicated, or out of order"
        )


CRASH_ONCE = """\
if REPLICA == "1" and marker_missing("crashed-once"):
    mark("crashed-once")
    print("crashing on purpose", flush=True)
    sys.exit(3)
mark(f"pid-{REPLICA}", str(os.getpid()))
while True:
    time.sleep(60)
"""

MARKER_MISSING = "def marker_missing(name):\n    return not (MARKERS / name).exists()\n\n"


def test_restart_policy_and_counts_survive_a_daemon_crash(sb: Stackblaze, tmp_path: Path) -> None:
    """After `kill -9` of the daemon, `ps` still shows the restarts and last exit from before, and a
    replica that crashes afterwards is still restarted by the new daemon."""
    # replica 1's first start crashes before it is available: a first deploy with nothing to keep exits 1
    assert sb.run("deploy", str(project(tmp_path, sb, MARKER_MISSING + CRASH_ONCE)), check=False).code == 1
    before = wait_for("replica 1 restarted once, both running",
                      lambda: (r := running(sb, 2)) and r[1]["restart_count"] == 1 and r)
    assert before[1]["last_exit"]["code"] == 3
    pid = before[1]["pid"]
    runner = sb.runner_pid()

    kill_daemon(sb)

    after = running(sb, 2)  # starts a new daemon
    assert after is not None, sb.ps()
    assert after[1]["restart_count"] >= 1, "the restart count was lost with the daemon"
    assert after[1]["last_exit"] is not None and after[1]["last_exit"]["code"] == 3, after[1]
    assert after[1]["pid"] == pid and after[2]["pid"] == before[2]["pid"]
    last_id = sb.events("worker")[-1]["id"]

    os.kill(pid, signal.SIGKILL)  # the replica crashes under the new daemon

    again = wait_for("replica 1 restarted by the new daemon",
                     lambda: (r := running(sb, 2)) and r[1]["pid"] != pid and r)
    assert again[1]["restart_count"] == after[1]["restart_count"] + 1
    assert again[1]["last_exit"]["signal"] == "SIGKILL", again[1]
    assert again[2]["pid"] == before[2]["pid"], "replica 2 was disturbed"
    assert sb.runner_pid() == runner
    kinds = [(e["kind"], e["replica"]) for e in sb.events("worker") if e["id"] > last_id]
    assert ("exit", 1) in kinds and ("start", 1) in kinds, kinds
    assert kinds.index(("exit", 1)) < kinds.index(("start", 1)), kinds


EXIT_ON_USR1 = """\
signal.signal(signal.SIGUSR1, lambda *_: os._exit(7))
mark(f"pid-{REPLICA}", str(os.getpid()))
while True:
    time.sleep(60)
"""


def test_replica_that_exits_while_the_daemon_is_down_is_restarted(sb: Stackblaze, tmp_path: Path) -> None:
    """A replica that exits while the daemon is dead is restarted as soon as a daemon is back, and its
    exit (code 7) appears once in `events`."""
    sb.run("deploy", str(project(tmp_path, sb, EXIT_ON_USR1)))
    before = wait_for("2 running replicas", lambda: running(sb, 2))
    wait_for("both replicas ready",
             lambda: all(marker(tmp_path, f"pid-{n}") == str(before[n]["pid"]) for n in (1, 2)))
    victim = psutil.Process(before[2]["pid"])

    kill_daemon(sb)
    victim.send_signal(signal.SIGUSR1)
    wait_for("replica 2 to exit and be reaped by the runner", lambda: not alive(victim), timeout=10)
    exited_by = time.time()
    assert sb.run("daemon", "status", "--json").json().get("running") is False, "the daemon came back too early"

    after = wait_for("replica 2 restarted", lambda: (r := running(sb, 2)) and r[2]["pid"] != victim.pid and r)

    assert after[2]["restart_count"] == 1, f"the exit while the daemon was down was not counted: {after[2]}"
    assert after[2]["last_exit"] is not None and after[2]["last_exit"]["code"] == 7, after[2]
    assert after[1]["pid"] == before[1]["pid"], "replica 1 was disturbed"
    exits = [e for e in sb.events("worker") if e["kind"] == "exit"]
    assert len(exits) == 1, exits
    assert exits[0]["replica"] == 2 and exits[0]["details"]["code"] == 7, exits[0]
    assert exits[0]["details"]["at"] <= exited_by, "the exit is dated when the daemon heard of it, not when it happened"


HELPER_IN_NEW_SESSION = """\
helper = subprocess.Popen(["setsid", "sleep", "100000"])
mark(f"helper-{REPLICA}-{os.getpid()}", str(helper.pid))
while True:
    time.sleep(60)
"""


def test_kill_9_of_the_runner_leaves_no_orphan_and_the_replicas_come_back(sb: Stackblaze, tmp_path: Path) -> None:
    """The runner should never die; if it does, its replicas die with it (nothing runs unsupervised, not
    even a helper in its own session), the daemon starts a new runner, and the replicas are restarted,
    each exit counted as a crash that names the cause."""
    sb.run("deploy", str(project(tmp_path, sb, HELPER_IN_NEW_SESSION)))
    before = wait_for("2 running replicas", lambda: running(sb, 2))
    names = [f"helper-{n}-{before[n]['pid']}" for n in (1, 2)]
    wait_for("both helpers started", lambda: all(marker(tmp_path, name) for name in names))
    helpers = [psutil.Process(int(marker(tmp_path, name) or 0)) for name in names]
    old_runner = sb.runner_pid()
    assert old_runner is not None and all(alive(p) for p in helpers)
    doomed = [psutil.Process(before[n]["pid"]) for n in (1, 2)] + helpers

    os.kill(old_runner, signal.SIGKILL)

    wait_for("the old replicas and their helpers to be gone", lambda: not any(alive(p) for p in doomed))
    after = wait_for("2 new replicas", lambda: (r := running(sb, 2)) and all(
        r[n]["pid"] != before[n]["pid"] for n in (1, 2)) and r)
    assert sb.runner_pid() not in (None, old_runner)
    assert all(after[n]["restart_count"] == 1 for n in (1, 2))
    assert after[1]["last_exit"]["meaning"] == "the runner died, and the replica with it"
