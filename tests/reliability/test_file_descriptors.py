"""1,000 replicas from a shell with `ulimit -n 1024`: the runner raises its own soft limit to the hard one
(two pipes and a log file per replica would not fit in 1,024) and gives each replica the usual soft 1,024,
as systemd does. All run, none crash-loops. The figure is printed.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import write_project
from tests.reliability.conftest import Stackblaze, marked_processes, runner_call, wait_for

REPLICAS = 1000


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


@pytest.fixture
def ulimit_1024() -> Iterator[int]:
    """This process's soft limit set to 1,024 (as `ulimit -Sn 1024` in the user's shell): the CLI, and the
    daemon and runner it starts, inherit it. Yields the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4 * REPLICAS:
        pytest.skip(f"the hard limit on open files here is {hard}: too low for {REPLICAS} replicas (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(900)
def test_a_thousand_replicas_under_ulimit_1024(ulimit_1024: int, sb: Stackblaze, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", f"""\
project: many
services:
  - name: worker
    start: sh worker.sh
    replicas: {REPLICAS}
""", {"worker.sh": 'echo "replica $STACKBLAZE_REPLICA up"\nexec sleep 1000000\n'})
    began = time.monotonic()
    sb.run("deploy", str(project), timeout=600)
    listing = wait_for(f"{REPLICAS} replicas running", lambda: (
        r := runner_call(sb.home, "list")) and sum(i["state"] == "running" for i in r["instances"]) == REPLICAS
        and r, timeout=300)
    took = time.monotonic() - began

    assert not [i for i in listing["instances"] if i["state"] != "running"], "a replica exited"
    assert len(marked_processes(sb.home)) == REPLICAS
    shown = sb.replicas("worker")
    assert len(shown) == REPLICAS and all(r["state"] == "running" for r in shown)
    restarts = sum(r["restart_count"] for r in shown)
    assert restarts == 0, f"{restarts} restarts: some replicas crash-looped"
    runner = listing["runner"]
    assert open_files_limit(runner["pid"]) == (ulimit_1024, ulimit_1024)  # raised to the hard limit
    replica = listing["instances"][0]["pid"]
    assert open_files_limit(replica) == (1024, ulimit_1024)  # the usual soft limit, hard unchanged
    log = sb.home / "logs" / "many" / "worker" / f"{REPLICAS}.log"
    assert f"replica {REPLICAS} up" in log.read_text()
    print(f"\n{REPLICAS} replicas under ulimit -n 1024: {len(shown)} running, {restarts} restarts, "
          f"{took:.1f}s from deploy to all running; runner open files {ulimit_1024}, replicas 1024/{ulimit_1024}")
