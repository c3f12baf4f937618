"""Resource use through the real CLI and API against a real daemon: a worker that leaks 50 MB at a time and
burns CPU, beside one that sleeps. `ps` shows their CPU and MEM, and the usage route serves the series
with the leaker's exit on the same time axis."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import PRELUDE, Stackblaze, wait_for, write_project

MB = 1 << 20
# Leaks 50 MB every 0.3 s (six times) while spinning half of each 40 ms; exits 3 when the test says so.
LEAKER = """
held = []
next_leak = time.monotonic()
while not (MARKERS / "stop").exists():
    if len(held) < 6 and time.monotonic() >= next_leak:
        held.append(bytearray(b"\\x01") * (50 << 20))  # written, so resident: not calloc's untouched pages
        next_leak += 0.3
    spin = time.monotonic() + 0.02
    while time.monotonic() < spin:
        pass
    time.sleep(0.02)
sys.exit(3)
"""
SLEEPER = "time.sleep(1e6)\n"


def deploy(sb: Stackblaze, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    project = write_project(tmp_path / "app", f"""
project: meters
env:
  MARKERS: "{markers}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: leaker
    start: python3 -u leaker.py
  - name: sleeper
    start: python3 -u sleeper.py
""", {"leaker.py": PRELUDE + LEAKER, "sleeper.py": PRELUDE + SLEEPER})
    sb.run("deploy", str(project), "--detach")


def replica(sb: Stackblaze, service: str) -> dict[str, Any]:
    return sb.replicas(service)[0]


def usage(sb: Stackblaze, service: str, **params: Any) -> dict[str, Any]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sb.home / "api.sock")),
                      base_url="http://stackblaze", timeout=30) as client:
        answer = client.get(f"/v1/services/{service}/usage", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_ps_shows_memory_rising_and_cpu_of_the_busy_worker_only(sb: Stackblaze, tmp_path: Path) -> None:
    """`ps --json`: the leaker's memory rises by more than 40 MB while it runs, its CPU is well above zero
    and the sleeper's near zero; the table has CPU and MEM columns in pm2's units."""
    deploy(sb, tmp_path)
    first = wait_for("a memory figure for the leaker", lambda: replica(sb, "leaker")["memory"])
    risen = wait_for("the leaker's memory to grow by 40 MB", lambda: (
        r := replica(sb, "leaker"))["memory"] is not None and r["memory"] > first + 40 * MB and r)
    assert risen["state"] == "running"
    busy, idle = wait_for("the sleeper to be sampled idle", lambda: (
        pair := (replica(sb, "leaker"), replica(sb, "sleeper")))[1]["cpu"] is not None
        and pair[1]["cpu"] < 2.0 and pair)
    assert busy["cpu"] is not None and busy["cpu"] > 10.0, busy
    assert 1 * MB < idle["memory"] < 100 * MB, idle  # a Python interpreter asleep
    table = sb.run("ps").out
    header = next(line for line in table.splitlines() if "REPLICA" in line)
    assert header.split()[6:8] == ["CPU", "MEM"], header
    leaker_row = next(line for line in table.splitlines() if line.startswith("leaker.1")).split()
    assert leaker_row[6].endswith("%") and leaker_row[8] == "MiB", leaker_row


def test_usage_route_serves_a_rising_series_and_the_exit_on_the_same_axis(sb: Stackblaze, tmp_path: Path) -> None:
    """The route's series for the leaker climbs sample after sample to 200+ MB; after it exits (and is
    restarted at once), its exit is in the answer's events, after the climb and before the fall."""
    deploy(sb, tmp_path)
    climbed = wait_for("200 MB in the leaker's series", lambda: (
        answer := usage(sb, "leaker"))["replicas"] and max(
            m or 0 for m in answer["replicas"][0]["memory"]) > 200 * MB and answer, timeout=30)
    series = climbed["replicas"][0]
    memory = [m for m in series["memory"] if m is not None]
    assert series["at"] == sorted(series["at"])
    assert all(later >= earlier - 4 * MB for earlier, later in pairwise(memory)), memory
    # The series shows the climb itself: its first sample is from before most of it (how early depends on when
    # the sampler's first tick fell, later on a loaded machine), its highest past 200 MB.
    assert memory[0] < 100 * MB and max(memory) > 200 * MB, memory
    assert climbed["available"] is True and 0 < climbed["interval"] <= 0.1  # 10 s at time scale 0.01
    (tmp_path / "markers" / "stop").touch()
    def measured_after_the_restart() -> tuple[dict[str, Any], dict[str, Any], list[tuple[float, Any]]] | None:
        """The answer, its exit and its points once a sample with a memory figure follows the exit by 0.3 s
        (the first ticks after it may find no process yet, and carry None)."""
        answer = usage(sb, "leaker")
        exits = [e for e in answer["events"] if e["kind"] == "exit"]
        if not exits or not answer["replicas"]:
            return None
        points = list(zip(answer["replicas"][0]["at"], answer["replicas"][0]["memory"], strict=True))
        late = any(at > exits[0]["at"] + 0.3 and m is not None for at, m in points)
        return (answer, exits[0], points) if late else None

    answer, exit_mark, points = wait_for("the exit and a measured sample after the restart",
                                         measured_after_the_restart, timeout=30)
    assert exit_mark["code"] == 3 and exit_mark["replica"] == 1
    before = [m for at, m in points if at < exit_mark["at"] and m is not None]
    restarted = [m for at, m in points if at > exit_mark["at"] + 0.2 and m is not None]
    assert max(before) > 200 * MB and restarted[-1] < 100 * MB, (max(before), restarted[-1])
    # The window and the replica filter: the sleeper's series only, none of the leaker's events.
    sleeper = usage(sb, "sleeper", replica=1, since=answer["since"])
    assert [s["replica"] for s in sleeper["replicas"]] == [1]
    assert all(e["replica"] == 1 for e in sleeper["events"]) and not [
        e for e in sleeper["events"] if e["kind"] == "exit"]


def test_usage_route_refuses_what_is_not_there(sb: Stackblaze, tmp_path: Path) -> None:
    """An unknown service or replica is a 404 naming it; a bad `since` a 400 naming the parameter."""
    deploy(sb, tmp_path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sb.home / "api.sock")),
                      base_url="http://stackblaze", timeout=30) as client:
        missing = client.get("/v1/services/nosuch/usage")
        replica_9 = client.get("/v1/services/sleeper/usage", params={"replica": 9})
        bad_since = client.get("/v1/services/sleeper/usage", params={"since": "yesterday"})
    assert missing.status_code == 404 and "nosuch" in missing.json()["error"]
    assert replica_9.status_code == 404 and "replica 9" in replica_9.json()["error"]
    assert bad_since.status_code == 400 and bad_since.json()["error"].startswith("since:")


def test_a_kubernetes_target_says_n_a(sb: Stackblaze, tmp_path: Path) -> None:
    """On a Kubernetes target (the fake cluster: no kubelet can run here) metrics-server is not read: `ps`
    says n/a in CPU and MEM, `--json` carries nulls, and the usage route answers `available: false`."""
    from tests.integration.test_targets_cli import SPEC, WORKER

    sb.env["STACKBLAZE_TARGET"] = "sim"
    project = write_project(tmp_path / "shop", SPEC, {"worker.py": WORKER})
    sb.run("deploy", str(project))
    replicas = wait_for("2 running pods", lambda: (
        found := sb.replicas("worker")) and [r["state"] for r in found] == ["running"] * 2 and found)
    assert [(r["cpu"], r["memory"]) for r in replicas] == [(None, None)] * 2
    rows = [line.split() for line in sb.run("ps").out.splitlines() if line.startswith("worker.")]
    assert [row[6:8] for row in rows] == [["n/a", "n/a"]] * 2, rows
    answer = usage(sb, "worker", project="@sim")
    assert answer["available"] is False and answer["replicas"] == [] and "n/a" in answer["note"]
