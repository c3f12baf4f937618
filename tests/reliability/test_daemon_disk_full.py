"""The daemon on a full disk: reads keep working, writes answer one line (`disk full (...): free space and
retry`, exit 1), exits still restart replicas (events that cannot be stored are counted, not fatal), and
once space is freed writes work again with no restart; `destroy` works on a full disk, in seconds.

STACKBLAZE_HOME is a real tmpfs of 16 MiB, filled for real (a file written until ENOSPC). Prints timings.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Result, write_project
from tests.reliability.conftest import Stackblaze, fill, marked_processes, tmpfs, wait_for

TICKER = """\
import time
while True:
    print("tick", flush=True)
    time.sleep(0.1)
"""
CRASHER = """\
import sys, time
print("about to fail", flush=True)
time.sleep(0.05)
sys.exit(3)
"""
SPEC = """\
project: full
services:
  - name: ticker
    start: python3 -u ticker.py
    replicas: 2
  - name: crasher
    start: python3 -u crasher.py
    replicas: 1
"""


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "home", "16m") as home:
        yield home
        for name in ("daemon.log", "runner.log", "daemon.out"):  # kept for a look after the unmount
            if (home / name).exists():
                shutil.copyfile(home / name, tmp_path / name)


@pytest.fixture
def sb_full(small_home: Path, sb: Stackblaze) -> Stackblaze:
    return sb  # mounted before the daemon starts, unmounted after it stopped


def timed(sb: Stackblaze, *args: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = sb.run(*args, check=False, timeout=120)
    return result, time.monotonic() - started


def restarts(sb: Stackblaze, service: str) -> int:
    return sum(int(r["restart_count"]) for r in sb.replicas(service))


def assert_disk_full(result: Result, what: str) -> None:
    """Exit 1 and, as the error (after a deploy's progress lines), one line saying what to do."""
    errors = [line for line in result.err.strip().splitlines() if line.startswith("error:")]
    assert result.code == 1, f"{what}: exit {result.code}: {result.err}{result.out}"
    assert len(errors) == 1 and errors[0] == result.err.strip().splitlines()[-1], result.err
    assert "disk full (" in errors[0] and "free space and retry" in errors[0], \
        f"{what}: not the one-line disk full error: {result.err!r}"
    assert "Traceback" not in result.err + result.out


def test_daemon_serves_reads_refuses_writes_and_recovers(sb_full: Stackblaze, small_home: Path,
                                                          tmp_path: Path) -> None:
    sb = sb_full
    project = write_project(tmp_path / "app", SPEC, {"ticker.py": TICKER, "crasher.py": CRASHER})
    sb.run("deploy", str(project), check=False, timeout=120)  # exits 1: crasher never becomes available
    wait_for("2 tickers running", lambda: sum(r["state"] == "running" for r in sb.replicas("ticker")) == 2)
    wait_for("the crasher restarting", lambda: restarts(sb, "crasher") >= 2)
    daemon = sb.daemon_pid()

    filler = fill(small_home)
    print(f"\nhome filled: {filler.stat().st_size >> 20} MiB filler")
    for args in (("ps", "--json"), ("events", "-n", "20", "--json"), ("logs", "ticker", "-n", "5"),
                 ("env", "list"), ("releases", "ticker"), ("daemon", "status")):
        result, took = timed(sb, *args)
        print(f"read  {' '.join(args):<28} exit {result.code} in {took * 1000:.0f} ms")
        assert result.code == 0, f"{args} failed on a full disk: {result.err}"

    (project / "ticker.py").write_text(TICKER + "# changed\n")
    for args in (("env", "set", "FULL=1"), ("scale", "ticker", "--replicas", "3"), ("deploy", str(project))):
        result, took = timed(sb, *args)
        print(f"write {' '.join(args[:3]):<28} exit {result.code} in {took * 1000:.0f} ms: {result.err.strip()}")
        assert_disk_full(result, " ".join(args))
        assert took < 30

    # Exits keep being handled while nothing can be stored: the crasher keeps restarting.
    before = restarts(sb, "crasher")
    wait_for("crasher restarts on a full disk", lambda: restarts(sb, "crasher") >= before + 2, timeout=30)
    assert sum(r["state"] == "running" for r in sb.replicas("ticker")) == 2

    filler.unlink()
    started = time.monotonic()
    result = sb.run("env", "set", "FULL=1", check=False)
    print(f"after freeing: env set exit {result.code} in {(time.monotonic() - started) * 1000:.0f} ms")
    assert result.code == 0, result.err
    assert sb.daemon_pid() == daemon, "the daemon was restarted"
    after = restarts(sb, "crasher")
    wait_for("crasher restarts after freeing", lambda: restarts(sb, "crasher") >= after + 1, timeout=30)
    lost = [e for e in sb.events() if e["kind"] == "events-lost"]
    print(f"events-lost: {[e['message'] for e in lost]}")
    assert lost and lost[0]["details"]["count"] >= 2
    assert sb.run("scale", "ticker", "--replicas", "1", check=False).code == 0


def test_destroy_on_a_full_disk(sb_full: Stackblaze, small_home: Path, tmp_path: Path) -> None:
    sb = sb_full
    project = write_project(tmp_path / "app", SPEC, {"ticker.py": TICKER, "crasher.py": CRASHER})
    sb.run("deploy", str(project), check=False, timeout=120)
    wait_for("2 tickers running", lambda: sum(r["state"] == "running" for r in sb.replicas("ticker")) == 2)
    assert marked_processes(sb.home)

    fill(small_home)
    result, took = timed(sb, "destroy", "--yes")
    print(f"\ndestroy on a full disk: exit {result.code} in {took:.2f} s {result.err.strip()}")
    assert result.code == 0, result.err + result.out
    assert took < 20
    assert not marked_processes(sb.home), "replicas survived destroy"
    left = sb.run("ps", check=False)
    assert (left.code != 0 and "not deployed" in left.err + left.out) or "nothing is deployed" in left.err + left.out
    assert not (sb.home / "releases" / "full").exists() and not (sb.home / "logs" / "full").exists()


def test_the_daemon_starts_on_a_full_disk(sb_full: Stackblaze, small_home: Path, tmp_path: Path) -> None:
    """A daemon that stopped cleanly left no -wal or -shm (SQLite removes them): opening the database needs
    room for them, which the daemon's reserve (run/disk-reserve) gives back."""
    sb = sb_full
    project = write_project(tmp_path / "app", SPEC, {"ticker.py": TICKER, "crasher.py": CRASHER})
    sb.run("deploy", str(project), check=False, timeout=120)
    wait_for("2 tickers running", lambda: sum(r["state"] == "running" for r in sb.replicas("ticker")) == 2)
    assert (sb.home / "run" / "disk-reserve").stat().st_size >= 4 << 20
    daemon = sb.daemon_pid()
    sb.run("daemon", "stop")
    wait_for("the old daemon to exit", lambda: not Path(f"/proc/{daemon}").exists())
    fill(small_home)
    result, took = timed(sb, "ps", "--json")
    print(f"\ndaemon start + ps on a full disk: exit {result.code} in {took:.2f} s")
    assert result.code == 0, result.err
    assert sum(r["state"] == "running" for r in sb.replicas("ticker")) == 2
    assert not (sb.home / "run" / "disk-reserve").exists()
