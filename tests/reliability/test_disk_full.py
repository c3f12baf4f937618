"""A full disk costs log lines, never replicas: the runner keeps every replica running, counts per replica
the lines it could not write, and writes again by itself once space is freed (no command).

The disk is a real tmpfs of a few MiB, filled for real (a file written until ENOSPC): first `logs/` alone,
then the whole STACKBLAZE_HOME. Each test prints its figures.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackblaze.engine.local.runner_client import RunnerClient
from tests.integration.conftest import write_project
from tests.reliability.conftest import (
    Stackblaze,
    fill,
    marked_processes,
    runner_instances,
    runner_socket,
    tmpfs,
    wait_for,
)

# About 1,000 numbered lines a second per replica, one write each, so a test can tell which are missing.
COUNTER = """\
import os, time
replica = os.environ["STACKBLAZE_REPLICA"]
i = 0
while True:
    os.write(1, f"{replica} {i:08d} {'x' * 80}\\n".encode())
    i += 1
    time.sleep(0.001)
"""

REPLICAS = 3


@pytest.fixture
def small_logs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "home" / "logs", "8m") as logs:
        yield logs


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "home", "48m") as home:
        yield home


@pytest.fixture
def sb_small_logs(small_logs: Path, sb: Stackblaze) -> Stackblaze:
    return sb  # the tmpfs is mounted before the daemon starts and unmounted after it stopped


@pytest.fixture
def sb_small_home(small_home: Path, sb: Stackblaze) -> Stackblaze:
    return sb


def numbers_in(log: Path) -> list[int]:
    """The line numbers the replica's log file holds (CRI records: time stream tag 'replica number x...')."""
    found = []
    for line in log.read_bytes().splitlines():
        fields = line.split(b" ")
        if len(fields) >= 6 and fields[2] == b"F":
            found.append(int(fields[4]))
    return found


def deploy_counters(sb: Stackblaze, tmp_path: Path) -> dict[str, dict[str, object]]:
    project = write_project(tmp_path / "app", f"""\
project: full
services:
  - name: counter
    start: python3 -u counter.py
    replicas: {REPLICAS}
""", {"counter.py": COUNTER})
    sb.run("deploy", str(project))
    logs = [sb.home / "logs" / "full" / "counter" / f"{n}.log" for n in range(1, REPLICAS + 1)]
    wait_for("every replica's first 200 lines", lambda: all(
        log.exists() and len(numbers_in(log)) >= 200 for log in logs))
    return {i["meta"]["replica"]: i for i in runner_instances(sb.home)}


def survive_a_full_disk(sb: Stackblaze, tmp_path: Path, filesystem: Path, runner_log_outside: bool) -> None:
    before = deploy_counters(sb, tmp_path)
    runner = sb.runner_pid()
    processes = {p.pid for p in marked_processes(sb.home)}
    assert len(before) == REPLICAS and len(processes) == REPLICAS

    filler = fill(filesystem)
    filled_at = time.monotonic()
    during = wait_for("every replica to lose lines", lambda: (
        i := {i["meta"]["replica"]: i for i in runner_instances(sb.home)})
        and all(r["dropped_lines"] >= 500 and r["dropped_since"] for r in i.values()) and i)
    assert all(r["state"] == "running" for r in during.values())
    assert all("No space left on device" in r["dropped_error"] for r in during.values())
    if runner_log_outside:  # logs/ is full, runner.log is not: the runner says what happens as it happens
        assert "cannot write the log of" in (sb.home / "runner.log").read_text()
    outage = time.monotonic() - filled_at

    filler.unlink()
    freed_at = time.monotonic()
    after = wait_for("writing to resume in every replica's log", lambda: (
        i := {i["meta"]["replica"]: i for i in runner_instances(sb.home)})
        and all(r["dropped_since"] is None for r in i.values()) and i, timeout=10)
    resumed_in = time.monotonic() - freed_at

    # Nothing was lost but lines: same runner, same processes, same replicas.
    assert sb.runner_pid() == runner
    assert {p.pid for p in marked_processes(sb.home)} == processes
    assert {n: r["pid"] for n, r in after.items()} == {n: r["pid"] for n, r in before.items()}
    # Every line is either in its file or counted as dropped: the count is exact, and no record is torn.
    logs = {n: sb.home / "logs" / "full" / "counter" / f"{n}.log" for n in after}
    at_resume = {n: max(numbers_in(log)) for n, log in logs.items()}
    wait_for("500 new lines in every log after the outage", lambda: all(
        max(numbers_in(log)) >= at_resume[n] + 500 for n, log in logs.items()))
    final = {i["meta"]["replica"]: i for i in runner_instances(sb.home)}
    for number, log in logs.items():
        numbers = numbers_in(log)
        assert numbers == sorted(numbers), "lines out of order"
        missing = (numbers[-1] + 1) - len(numbers)
        assert missing == final[number]["dropped_lines"], (number, missing, final[number]["dropped_lines"])
        assert len(set(numbers)) == len(numbers), "a line was written twice"
    # The user sees the same replicas, as the daemon reports them (no command was needed to recover).
    shown = {r["replica"]: r["pid"] for r in sb.replicas("counter")}
    assert shown == {n: r["pid"] for n, r in before.items()}
    # ... and is told what the logs are missing: in ps, and as an event per replica once writing resumed.
    wait_for("ps to count the lost lines", lambda: {
        r["replica"]: r["log_lines_dropped"] for r in sb.replicas("counter")} == {
        n: r["dropped_lines"] for n, r in final.items()})
    resumed = [e for e in sb.events("counter") if e["kind"] == "log-resumed"]
    assert {e["replica"] for e in resumed} == set(final)
    assert "lines were lost" in sb.run("ps", "counter").out
    assert "cannot write the log of" in (sb.home / "runner.log").read_text()
    print(f"\n{filesystem.name} full for {outage:.1f}s: {REPLICAS} replicas, 0 lost (same PIDs, same runner); "
          f"lines dropped and counted per replica: {[final[n]['dropped_lines'] for n in sorted(final)]} "
          f"(= lines missing from each file); writing resumed {resumed_in:.2f}s after the space was freed")


def test_full_logs_directory_costs_lines_not_replicas(sb_small_logs: Stackblaze, tmp_path: Path,
                                                      small_logs: Path) -> None:
    """`logs/` on its own filesystem, full: replicas keep running, lost lines are counted, runner.log (not
    under logs/) says so at once, and writing resumes by itself when space is freed."""
    survive_a_full_disk(sb_small_logs, tmp_path, small_logs, runner_log_outside=True)


def test_full_home_costs_lines_not_replicas(sb_small_home: Stackblaze, tmp_path: Path, small_home: Path) -> None:
    """The whole STACKBLAZE_HOME full (state.db and runner.log included): the same, and what the runner had
    to say while its own log could not be written is written once space returns."""
    survive_a_full_disk(sb_small_home, tmp_path, small_home, runner_log_outside=False)


def test_the_daemon_hears_when_lines_start_and_stop_being_lost(start_runner: Any, tmp_path: Path) -> None:
    """RunnerClient.on_log_drops gets `log-dropping` when a replica's lines start being lost and
    `log-resumed` (with how many, since and until when) once they are written again: what the daemon
    needs to report it once space returns, as an event and in `ps`."""
    with tmpfs(tmp_path / "logs", "1m") as logs:
        runner = start_runner()
        heard: list[dict[str, Any]] = []

        async def listen() -> None:
            client = RunnerClient(runner_socket(runner.home), log_file=runner.home / "runner.log")

            async def on_log_drops(message: dict[str, Any]) -> None:
                heard.append(message)

            client.on_log_drops = on_log_drops
            await client.connect(start=False)
            try:
                await client.call("spawn", key="counter", argv=[sys.executable, "-c", COUNTER],
                                  env={"STACKBLAZE_REPLICA": "1"}, cwd=str(tmp_path), log_path=str(logs / "1.log"),
                                  meta={})
                await wait_async(lambda: (logs / "1.log").exists() and len(numbers_in(logs / "1.log")) > 100)
                filler = fill(logs)
                await wait_async(lambda: [m["event"] for m in heard] == ["log-dropping"])
                await wait_async(lambda: client_dropped(runner) > 200)
                filler.unlink()
                await wait_async(lambda: [m["event"] for m in heard] == ["log-dropping", "log-resumed"])
            finally:
                await client.close()

        asyncio.run(listen())
        dropping, resumed = heard
        assert "No space left on device" in dropping["instance"]["dropped_error"]
        assert resumed["lost"] == resumed["instance"]["dropped_lines"] > 200
        assert resumed["since"] == dropping["instance"]["dropped_since"] < resumed["until"]
        assert resumed["instance"]["dropped_since"] is None
        runner.call("stop", key="counter", signal=9, grace=1)
        runner.exit_of("counter")
        runner.call("ack", keys=["counter"])  # the runner closes the log file: the tmpfs can go
    print(f"\nheard: log-dropping, then log-resumed: {resumed['lost']} lines lost over "
          f"{resumed['until'] - resumed['since']:.2f}s")


def client_dropped(runner: Any) -> int:
    return int(runner.call("list")["instances"][0]["dropped_lines"])


async def wait_async(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)
