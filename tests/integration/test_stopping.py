"""Stopping replicas the way Kubernetes does, through the real CLI, daemon and runner.

The stop signal goes to the replica's main process only; when it exits, or its `shutdown_grace` runs out,
SIGKILL goes to everything left of the replica, grandchildren in their own session included. Scaling down
stops the highest-numbered replicas; a rolling release starts new replicas before it stops the old ones,
a recreate release stops every old one first.

Time scale is 0.01 (see conftest): `shutdown_grace: 100s` is one real second.
Workers report what happened to them through marker files in the test's tmp dir (env MARKERS).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil

from tests.integration.conftest import PRELUDE, Stackblaze, alive, instance_pids, marker, marker_project, wait_for


def project(tmp_path: Path, sb: Stackblaze, worker: str, *, replicas: int = 1, grace: str = "100s",
            strategy: str = "rolling", extra: dict[str, str] | None = None) -> Path:
    return marker_project(tmp_path, sb, worker, name="stopping", replicas=replicas, grace=grace,
                          strategy=strategy, extra=extra)


def wait_marker(tmp_path: Path, name: str, timeout: float = 20.0) -> str:
    return wait_for(f"marker {name}", lambda: marker(tmp_path, name), timeout=timeout)  # type: ignore[no-any-return]


def exits(events: list[dict[str, Any]], after_id: int = 0) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "exit" and e["id"] > after_id]


def running(sb: Stackblaze, service: str, count: int, release: int | None = None) -> list[dict[str, Any]] | None:
    """The replicas, once exactly `count` run (of `release`, if given) and none is stopping."""
    replicas = sb.replicas(service)
    ok = (len(replicas) == count and all(r["state"] == "running" and not r["stopping"] for r in replicas)
          and (release is None or all(r["release"] == release for r in replicas)))
    return replicas if ok else None


IGNORES_TERM = """\
signal.signal(signal.SIGTERM, signal.SIG_IGN)
mark("ready", str(os.getpid()))
while True:
    time.sleep(60)
"""


def test_worker_that_ignores_sigterm_is_killed_after_its_grace(sb: Stackblaze, tmp_path: Path) -> None:
    """`stackblaze stop` on a worker that ignores SIGTERM waits out the grace, then SIGKILLs it: the
    command returns, the process is gone, and `events` says it ended by SIGKILL."""
    sb.run("deploy", str(project(tmp_path, sb, IGNORES_TERM, grace="100s")))  # 1 s real
    pid = int(wait_marker(tmp_path, "ready"))
    proc = psutil.Process(pid)

    started = time.monotonic()
    sb.run("stop", "worker")
    took = time.monotonic() - started

    assert not alive(proc), "the worker survived `stackblaze stop`"
    assert took >= 1.0, f"SIGKILL came after {took:.2f}s, before the 1 s grace ran out"
    assert took < 10.0, f"stop took {took:.2f}s for a 1 s grace"
    [exit_event] = exits(sb.events("worker"))
    assert exit_event["details"]["signal"] == "SIGKILL", exit_event
    assert exit_event["details"]["code"] is None, exit_event
    assert not instance_pids(sb.home)


SLOW_TERM = """\
def on_term(*_):
    mark("term-start", repr(time.time()))
    time.sleep(1.0)
    mark("term-done", repr(time.time()))
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
mark("ready", str(os.getpid()))
while True:
    time.sleep(60)
"""


def test_worker_gets_its_grace_to_finish_and_exits_cleanly(sb: Stackblaze, tmp_path: Path) -> None:
    """A worker whose SIGTERM handler needs a second to finish its work gets that second when the grace
    is longer: its cleanup completes and it exits with code 0, not by SIGKILL."""
    sb.run("deploy", str(project(tmp_path, sb, SLOW_TERM, grace="600s")))  # 6 s real
    proc = psutil.Process(int(wait_marker(tmp_path, "ready")))

    started = time.monotonic()
    sb.run("stop", "worker")
    took = time.monotonic() - started

    assert not alive(proc)
    term_start, term_done = marker(tmp_path, "term-start"), marker(tmp_path, "term-done")
    assert term_start is not None, "the worker never got SIGTERM"
    assert term_done is not None, "the worker was killed before its SIGTERM handler finished"
    assert float(term_done) - float(term_start) >= 1.0
    assert 1.0 <= took < 6.0, f"stop took {took:.2f}s: should wait for the worker's exit, not the 6 s grace"
    [exit_event] = exits(sb.events("worker"))
    assert exit_event["details"]["code"] == 0, exit_event
    assert exit_event["details"]["signal"] is None, exit_event


POOL_MAIN = """\
child = subprocess.Popen([sys.executable, "-u", "child.py"])

def on_term(*_):
    mark("main-term", repr(time.time()))
    time.sleep(1.0)  # e.g. a Celery master requeueing its pool's tasks
    mark("main-exiting", repr(time.time()))
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
mark("main-ready", str(os.getpid()))
while True:
    time.sleep(60)
"""

POOL_CHILD = """\
def on_signal(number, _frame):
    mark(f"child-got-{signal.Signals(number).name}", repr(time.time()))

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, on_signal)
mark("child-ready", str(os.getpid()))
while True:
    mark("child-heartbeat", repr(time.time()))
    time.sleep(0.05)
"""


def test_pool_child_is_not_signalled_before_the_main_process_exits(sb: Stackblaze, tmp_path: Path) -> None:
    """The stop signal goes to the main process only: a pool child keeps working while the main process
    drains (no SIGTERM/SIGINT/SIGHUP reaches it), and once the main process exits nothing of the replica
    is left."""
    app = project(tmp_path, sb, POOL_MAIN, grace="600s", extra={"child.py": POOL_CHILD})
    sb.run("deploy", str(app))
    main = psutil.Process(int(wait_marker(tmp_path, "main-ready")))
    child = psutil.Process(int(wait_marker(tmp_path, "child-ready")))

    sb.run("stop", "worker")

    got = sorted(p.name for p in (tmp_path / "markers").glob("child-got-*"))
    assert not got, f"the pool child was signalled before its master exited: {got}"
    main_term, main_exiting = marker(tmp_path, "main-term"), marker(tmp_path, "main-exiting")
    assert main_term is not None and main_exiting is not None, "the main process did not finish its drain"
    heartbeat = float(marker(tmp_path, "child-heartbeat") or 0)
    assert heartbeat >= float(main_exiting) - 0.5, "the pool child stopped working while its master drained"
    assert not alive(main) and not alive(child), "a process of the stopped replica survived"
    assert not instance_pids(sb.home)
    [exit_event] = exits(sb.events("worker"))
    assert exit_event["details"]["code"] == 0, exit_event


ESCAPER = """\
normal = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
mark("normal", str(normal.pid))
first = os.fork()
if first == 0:
    os.setsid()  # a new session and group: the replica's group kill does not reach it
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # a proper daemon: it does not even hold the log pipes
        mark("detached", str(os.getpid()))
        while True:
            time.sleep(60)
    os._exit(0)
os.waitpid(first, 0)
mark("main", str(os.getpid()))
while True:
    time.sleep(60)
"""


def start_escaper(sb: Stackblaze, tmp_path: Path) -> list[psutil.Process]:
    sb.run("deploy", str(project(tmp_path, sb, ESCAPER, grace="100s")))
    procs = [psutil.Process(int(wait_marker(tmp_path, name))) for name in ("main", "normal", "detached")]
    detached = procs[2]
    assert detached.pid in instance_pids(sb.home)
    assert os.getsid(detached.pid) != os.getsid(procs[0].pid), "the grandchild is not in its own session"
    return procs


def test_stop_leaves_no_grandchild_even_in_its_own_session(sb: Stackblaze, tmp_path: Path) -> None:
    """After `stackblaze stop`, no process of the replica survives: neither an ordinary child nor a
    double-forked grandchild that started its own session and closed its stdio."""
    procs = start_escaper(sb, tmp_path)

    sb.run("stop", "worker")

    left = [p.pid for p in procs if alive(p)]
    assert not left, f"processes of the stopped replica survived: {left}"
    assert not instance_pids(sb.home)


def test_destroy_leaves_no_grandchild_even_in_its_own_session(sb: Stackblaze, tmp_path: Path) -> None:
    """`stackblaze destroy -y` stops every process of the project, a grandchild in its own session
    included."""
    procs = start_escaper(sb, tmp_path)

    sb.run("destroy", "-y")

    left = [p.pid for p in procs if alive(p)]
    assert not left, f"processes of the destroyed project survived: {left}"
    assert not instance_pids(sb.home)


CLEAN_ENV_DAEMON = '''\
helper = """
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)
"""
# A helper started with an explicit environment that daemonizes itself (double fork, setsid, no stdio).
subprocess.run([sys.executable, "-c", helper, str(MARKERS / "helper")], env={"PATH": os.environ["PATH"]},
               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
mark("main", str(os.getpid()))
while True:
    time.sleep(60)
'''


def test_stop_leaves_no_daemonized_helper_started_with_a_clean_env(sb: Stackblaze, tmp_path: Path) -> None:
    """A worker that launches a helper with its own environment (subprocess `env={...}`), which then
    daemonizes (double fork, setsid): `stackblaze stop` leaves none of it running either."""
    sb.run("deploy", str(project(tmp_path, sb, CLEAN_ENV_DAEMON, grace="100s")))
    main = psutil.Process(int(wait_marker(tmp_path, "main")))
    helper = psutil.Process(int(wait_marker(tmp_path, "helper")))
    try:
        sb.run("stop", "worker")

        assert not alive(main)
        assert not alive(helper), f"the replica's daemonized helper (pid {helper.pid}) survived `stackblaze stop`"
    finally:
        if alive(helper):
            helper.kill()  # do not leak it past the test


SLEEPER = """\
mark(f"ready-{REPLICA}", str(os.getpid()))
while True:
    time.sleep(60)
"""


def test_scale_down_stops_the_highest_numbered_replicas(sb: Stackblaze, tmp_path: Path) -> None:
    """`stackblaze scale worker --replicas 2` from 4 stops replicas 3 and 4; replicas 1 and 2 keep
    running undisturbed (same pids, no restart)."""
    sb.run("deploy", str(project(tmp_path, sb, SLEEPER, replicas=4, grace="100s")))
    before = {r["replica"]: r["pid"] for r in wait_for("4 running replicas", lambda: running(sb, "worker", 4))}
    for n in range(1, 5):
        wait_marker(tmp_path, f"ready-{n}")
    doomed = [psutil.Process(before[3]), psutil.Process(before[4])]
    last_id = sb.events("worker")[-1]["id"]

    sb.run("scale", "worker", "--replicas", "2")

    after = wait_for("2 running replicas", lambda: running(sb, "worker", 2))
    assert {r["replica"]: r["pid"] for r in after} == {1: before[1], 2: before[2]}
    assert all(r["restart_count"] == 0 for r in after)
    wait_for("replicas 3 and 4 to exit", lambda: not any(alive(p) for p in doomed), timeout=10)
    stopped = wait_for("exit events of replicas 3 and 4",
                       lambda: sorted(e["replica"] for e in exits(sb.events("worker"), last_id)) == [3, 4])
    assert stopped
    assert all(alive(psutil.Process(before[n])) for n in (1, 2))


def versioned_worker(version: int) -> str:
    return f"""\
VERSION = {version}

def on_term(*_):
    time.sleep(0.3)  # finishing the current job
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
mark(f"ready-v{{VERSION}}-{{REPLICA}}", str(os.getpid()))
while True:
    time.sleep(60)
"""


def redeploy(sb: Stackblaze, tmp_path: Path, strategy: str) -> tuple[list[dict[str, Any]], int]:
    """Deploy release 1 with 2 replicas, then a code change as release 2; return events and the id of the
    second deploy's event."""
    app = project(tmp_path, sb, versioned_worker(1), replicas=2, grace="600s", strategy=strategy)
    sb.run("deploy", str(app))
    wait_for("release 1 running", lambda: running(sb, "worker", 2, release=1))
    for n in (1, 2):
        wait_marker(tmp_path, f"ready-v1-{n}")
    (app / "worker.py").write_text(PRELUDE + versioned_worker(2))

    sb.run("deploy", str(app))

    wait_for("release 2 running", lambda: running(sb, "worker", 2, release=2))
    for n in (1, 2):
        wait_marker(tmp_path, f"ready-v2-{n}")
    events = sb.events()
    deploy_id = [e for e in events if e["kind"] == "deploy"][-1]["id"]
    wait_for("both old replicas' exits", lambda: len(exits(sb.events("worker"), deploy_id)) == 2)
    return sb.events(), deploy_id


def new_starts(events: list[dict[str, Any]], after_id: int) -> dict[int, float]:
    return {e["replica"]: e["at"] for e in events
            if e["kind"] == "start" and e["id"] > after_id and e["details"]["release"] == 2}


def test_rolling_release_starts_new_replicas_before_stopping_old(sb: Stackblaze, tmp_path: Path) -> None:
    """With `strategy: rolling`, a new release's replica starts before the old replica it replaces is
    stopped: each old replica exits after its successor started, so the service never runs short."""
    events, deploy_id = redeploy(sb, tmp_path, "rolling")

    started = new_starts(events, deploy_id)
    stopped = {e["replica"]: e["details"]["at"] for e in exits(events, deploy_id)}
    assert sorted(started) == [1, 2] and sorted(stopped) == [1, 2], events
    for n in (1, 2):
        assert started[n] < stopped[n], f"replica {n}: old one exited at {stopped[n]}, new started {started[n]}"
    assert all(e["details"]["code"] == 0 for e in exits(events, deploy_id)), "old replicas did not exit cleanly"


def test_recreate_release_stops_every_old_replica_first(sb: Stackblaze, tmp_path: Path) -> None:
    """With `strategy: recreate`, every old replica has exited before any replica of the new release
    starts: two releases never run side by side."""
    events, deploy_id = redeploy(sb, tmp_path, "recreate")

    started = new_starts(events, deploy_id)
    stopped = {e["replica"]: e["details"]["at"] for e in exits(events, deploy_id)}
    assert sorted(started) == [1, 2] and sorted(stopped) == [1, 2], events
    assert max(stopped.values()) < min(started.values()), f"old exits {stopped}, new starts {started}"
    assert all(e["details"]["code"] == 0 for e in exits(events, deploy_id)), "old replicas did not exit cleanly"


def test_exit_event_of_a_stopped_replica_names_its_release(sb: Stackblaze, tmp_path: Path) -> None:
    """`stackblaze events --json` says which release a stopped replica ran, as it does for a crash."""
    sb.run("deploy", str(project(tmp_path, sb, SLEEPER, grace="100s")))
    wait_marker(tmp_path, "ready-1")

    sb.run("stop", "worker")

    [exit_event] = exits(sb.events("worker"))
    assert exit_event["details"]["release"] == 1, exit_event
