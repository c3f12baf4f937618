"""Deploys that never make things worse: gated rollouts, kept scale, failures reported — the real CLI, daemon
and runner at time scale 0.01, processes counted from /proc (psutil), not from our own state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import redis

from tests.integration.conftest import Stackblaze, wait_for, write_project

SLEEPER = "import os, time\nprint('up', os.environ['STACKBLAZE_RELEASE'], flush=True)\ntime.sleep(1e6)\n"
CRASHER = ("import sys, time\nprint('connecting to the broker', flush=True)\ntime.sleep(0.5)\n"
           "print('ConnectionError: broker unreachable', file=sys.stderr, flush=True)\nsys.exit(3)\n")
# A queue consumer with no dependency: RESP over a socket. BLPOP a job, INCR done, for ever; a release
# built with CRASH=1 exits 3 after half a second, as a worker with a bad config would.
CONSUMER = """\
import os, socket, sys, time
from urllib.parse import urlparse
url = urlparse(os.environ["REDIS_URL"])
conn = socket.create_connection((url.hostname, url.port))
stream = conn.makefile("rb")

def read():
    line = stream.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"*":
        return None if int(rest) < 0 else [read() for _ in range(int(rest))]
    if kind == b"$":
        return None if int(rest) < 0 else stream.read(int(rest) + 2)[:-2]
    if kind == b"-":
        raise RuntimeError(rest.decode())
    return rest

def call(*args):
    parts = [str(a).encode() for a in args]
    conn.sendall(b"*%d\\r\\n" % len(parts) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(p), p) for p in parts))
    return read()

born = time.monotonic()
print("consuming", os.environ["STACKBLAZE_RELEASE"], flush=True)
while True:
    if CRASH and time.monotonic() - born > 0.5:
        print("ConnectionError: lost the broker", file=sys.stderr, flush=True)
        sys.exit(3)
    if call("BLPOP", "jobs", "0.1"):
        call("INCR", "done")
"""
# min_ready 100 s is 1 s at time scale 0.01: a replica that exits after 0.5 s never becomes available.
MIN_READY_REAL = 1.0


def spec(name: str, *, replicas: int = 1, start: str = "python3 worker.py", strategy: str = "rolling",
         extra: str = "") -> str:
    return f"""\
project: {name}
services:
  - name: worker
    start: {start}
    replicas: {replicas}
    strategy: {strategy}
    min_ready: 100s
    shutdown_grace: 100s
{extra}"""


def processes(sb: Stackblaze) -> list[tuple[int, str]]:
    """(pid, release) of every live worker process of this test, read from /proc."""
    found = []
    for proc in psutil.process_iter(["environ", "status", "cmdline"]):
        env = proc.info["environ"] or {}
        if proc.info["status"] == psutil.STATUS_ZOMBIE or env.get("STACKBLAZE_SERVICE") != "worker":
            continue
        if env.get("STACKBLAZE_HOME_PROBE") == str(sb.home) and "worker.py" in " ".join(proc.info["cmdline"] or []):
            found.append((proc.pid, env.get("STACKBLAZE_RELEASE", "?")))
    return found


@contextmanager
def sampling(sb: Stackblaze, interval: float = 0.05) -> Iterator[list[list[tuple[int, str]]]]:
    """Samples of processes() every `interval` seconds while the block runs."""
    samples: list[list[tuple[int, str]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(processes(sb))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def project_env(sb: Stackblaze) -> str:
    return f"env:\n  STACKBLAZE_HOME_PROBE: \"{sb.home}\"\n"


def deploy(sb: Stackblaze, app: Path) -> tuple[int, str]:
    result = sb.run("deploy", str(app), check=False, timeout=120)
    return result.code, result.err + result.out


def test_scale_is_kept_across_deploys_until_the_spec_changes_its_count(sb: Stackblaze, tmp_path: Path) -> None:
    app = write_project(tmp_path / "app", project_env(sb) + spec("kept").replace("min_ready: 100s", "min_ready: 0"),
                        {"worker.py": SLEEPER})
    assert deploy(sb, app)[0] == 0
    sb.run("scale", "worker", "--replicas", "4")
    wait_for("4 processes", lambda: len(processes(sb)) == 4)

    (app / "worker.py").write_text(SLEEPER + "# a code change\n")
    code, output = deploy(sb, app)
    assert code == 0, output
    assert "worker: keeping 4 replicas (set by scale; the spec says 1)" in output
    running = processes(sb)
    assert sorted(release for _, release in running) == ["2"] * 4, running

    code, output = deploy(sb, app)  # unchanged tree: nothing restarts
    assert code == 0, output
    assert sorted(processes(sb)) == sorted(running)

    sb.run("daemon", "stop")  # the kept count is state, not memory
    assert sb.ps("worker")["services"][0]["desired"] == 4

    (app / "stackblaze.yaml").write_text((app / "stackblaze.yaml").read_text().replace("replicas: 1", "replicas: 2"))
    code, output = deploy(sb, app)
    assert code == 0, output
    wait_for("2 processes", lambda: len(processes(sb)) == 2)
    scale_events = [e for e in sb.events("worker") if e["kind"] == "scale"]
    assert [(e["details"]["from"], e["details"]["to"]) for e in scale_events] == [(1, 4), (4, 2)]


def test_broken_releases_never_take_down_a_consuming_service(sb: Stackblaze, tmp_path: Path, redis_url: str) -> None:
    """4 consumers on a real Redis queue; a release whose start command does not exist, then one that exits 3
    after 0.5 s: each deploy exits 1 naming the cause, no sample ever shows fewer than 4 old replicas, the
    service stays on the old release and every job pushed meanwhile is consumed."""
    env = project_env(sb) + f"  REDIS_URL: \"{redis_url}\"\n"
    app = write_project(tmp_path / "app", env + spec("queue", replicas=4),
                        {"worker.py": "CRASH = False\n" + CONSUMER})
    assert deploy(sb, app)[0] == 0
    assert sorted(r for _, r in processes(sb)) == ["1"] * 4
    queue = redis.Redis.from_url(redis_url)
    pushed = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal pushed
        while not stop.is_set():
            queue.rpush("jobs", pushed)
            pushed += 1
            stop.wait(0.02)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        spec_file = app / "stackblaze.yaml"
        good = spec_file.read_text()
        spec_file.write_text(good.replace("start: python3 worker.py", "start: pyhton worker.py"))
        done_before = int(queue.get("done") or 0)
        with sampling(sb) as samples:
            code, output = deploy(sb, app)
        assert code == 1, output
        assert "rollout of release 2 failed" in output and "the start command was not found" in output, output
        assert min(sum(r == "1" for _, r in s) for s in samples) >= 4
        assert int(queue.get("done") or 0) > done_before  # consumed while the deploy ran

        spec_file.write_text(good)
        (app / "worker.py").write_text("CRASH = True\n" + CONSUMER)
        done_before = int(queue.get("done") or 0)
        with sampling(sb) as samples:
            code, output = deploy(sb, app)
        assert code == 1, output
        assert "rollout of release 3 failed" in output and "exit 3" in output, output
        assert "ConnectionError: lost the broker" in output  # the lines that explain it
        assert min(sum(r == "1" for _, r in s) for s in samples) >= 4
        assert int(queue.get("done") or 0) > done_before
        assert max(len(s) for s in samples) <= 5  # one new replica at a time (max_surge 1)
    finally:
        stop.set()
        producer.join()
    ps = sb.ps("worker")["services"][0]
    assert ps["release"] == 1 and ps["running"] == 4
    wait_for("the queue drained", lambda: queue.llen("jobs") == 0 and int(queue.get("done") or 0) == pushed)
    assert sorted(r for _, r in processes(sb)) == ["1"] * 4
    failed = [e for e in sb.events("worker") if e["kind"] == "rollout-failed"]
    assert [e["details"]["release"] for e in failed] == [2, 3]
    assert "release 1 kept running" in failed[-1]["message"]
    listing = sb.run("releases", "worker").out
    assert listing.count("rollout failed") == 2


def test_a_good_release_rolls_replica_by_replica(sb: Stackblaze, tmp_path: Path) -> None:
    """Never fewer than 4 nor more than 5 processes; the last old replica stops only after the last new one
    has been available (run min_ready without exiting)."""
    app = write_project(tmp_path / "app", project_env(sb) + spec("roll", replicas=4), {"worker.py": SLEEPER})
    assert deploy(sb, app)[0] == 0
    (app / "worker.py").write_text(SLEEPER + "# v2\n")
    with sampling(sb) as samples:
        code, output = deploy(sb, app)
    assert code == 0, output
    assert "worker: release 2 rolled out, 4/4 available" in output
    counts = [len(s) for s in samples]
    assert min(counts) >= 4 and max(counts) <= 5, counts
    assert sorted(r for _, r in samples[-1]) == ["2"] * 4
    events = sb.events("worker")
    new_starts = [e["at"] for e in events if e["kind"] == "start" and e["details"]["release"] == 2]
    old_stops = [e["at"] for e in events if e["kind"] == "exit" and e["details"]["release"] == 1]
    assert len(new_starts) == 4 and len(old_stops) == 4
    assert max(old_stops) >= max(new_starts) + MIN_READY_REAL
    assert any("2/4 new replicas available" in line for line in output.splitlines())  # live progress


def test_recreate_with_a_failing_release_starts_the_previous_one_again(sb: Stackblaze, tmp_path: Path) -> None:
    app = write_project(tmp_path / "app", project_env(sb) + spec("recreate", replicas=2, strategy="recreate"),
                        {"worker.py": SLEEPER})
    assert deploy(sb, app)[0] == 0
    (app / "worker.py").write_text(CRASHER)
    result = sb.run("deploy", "--detach", str(app), check=False)
    assert result.code == 0, result.err  # --detach returns once built
    status = sb.run("rollout", "status", "worker", check=False, timeout=60)
    assert status.code == 1
    assert "rollout failed" in status.err and "release 1 started again" in status.err
    wait_for("release 1 running again", lambda: sorted(r for _, r in processes(sb)) == ["1", "1"])
    assert sb.ps("worker")["services"][0]["release"] == 1
    failed = next(e for e in sb.events("worker") if e["kind"] == "rollout-failed")
    assert "release 1 started again" in failed["message"]
    assert "ConnectionError: broker unreachable" in failed["details"]["last_lines"]


def test_a_failed_first_deploy_leaves_a_trace(sb: Stackblaze, tmp_path: Path) -> None:
    app = write_project(tmp_path / "app", project_env(sb) + spec("first", extra="    build: echo compiling; exit 4\n"),
                        {"worker.py": SLEEPER})
    code, output = deploy(sb, app)
    assert code == 1 and "build failed (exit 4)" in output, output
    kinds = [e["kind"] for e in sb.events()]
    assert "build-failed" in kinds
    assert "compiling" in sb.run("logs", "worker", "--build").out
    assert "build failed" in sb.run("releases", "worker").out


def test_a_first_deploy_that_crashes_exits_1_and_stays_under_the_restart_policy(sb: Stackblaze,
                                                                              tmp_path: Path) -> None:
    app = write_project(tmp_path / "app", project_env(sb) + spec("crashloop"), {"worker.py": CRASHER})
    code, output = deploy(sb, app)
    assert code == 1, output
    assert "nothing earlier to keep" in output and "exit 3" in output
    replica = wait_for("a restart", lambda: (r := sb.replicas("worker")[0]) and r["restart_count"] >= 2 and r)
    assert replica["last_exit"]["code"] == 3


def test_a_rollout_that_stalls_fails_at_its_progress_deadline(sb: Stackblaze, tmp_path: Path) -> None:
    """An old replica that ignores SIGTERM holds its place (stopping processes count against max_surge), so
    the rollout cannot go on: at progress_deadline (200 s = 2 s real) it fails, naming the deadline and the
    count, and the old release runs at its full count again."""
    stubborn = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('up', os.environ['STACKBLAZE_RELEASE'], flush=True)\ntime.sleep(1e6)\n")
    app = write_project(tmp_path / "app", project_env(sb) + spec("stall", replicas=2, extra=(
        "    progress_deadline: 200s\n")).replace("shutdown_grace: 100s", "shutdown_grace: 600s"),
        {"worker.py": stubborn})
    assert deploy(sb, app)[0] == 0
    (app / "worker.py").write_text(SLEEPER)
    code, output = deploy(sb, app)
    assert code == 1, output
    assert "not finished within its progress_deadline (200s): 1/2 new replicas available" in output, output
    wait_for("2 replicas of release 1 and nothing else",
             lambda: sorted(r for _, r in processes(sb)) == ["1", "1"], timeout=30)
    assert sb.ps("worker")["services"][0]["release"] == 1
