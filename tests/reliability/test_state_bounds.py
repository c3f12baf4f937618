"""Bounded state: a crash loop cannot grow state.db without bound.

The first test runs the real thing: 100 replicas crash-looping, each exit printing 25 lines of 2 KB and
one of 20 KB (worst-case last lines), under the real restart policy at STACKBLAZE_TIME_SCALE=0.01, until
they have restarted as often as an hour makes them (~15 times each), and measures state.db (+ its WAL).
The second drives the store directly far past its limits (30,000 exits at the size cap: days of such a
loop) with the default limits, and shows the file stops growing. Both print their figures.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from stackblaze.settings import EventLimits
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store
from tests.integration.conftest import write_project
from tests.reliability.conftest import Stackblaze, wait_for

REPLICAS = 100
CRASH = """\
#!/bin/sh
line=$(printf '%02000d' 0)
i=0
while [ $i -lt 25 ]; do echo "error $i $line"; i=$((i+1)); done
printf '%020000d\\n' 0
exit 1
"""
# Restarts of one replica in an hour under the policy (at once, then 10, 20, 40, 80, 160, then every 300 s):
# 6 within the first 310 s and one per 300 s after; a little less counting the time each run takes.
RESTARTS_PER_HOUR = 14


def db_size(home: Path) -> int:
    return sum(os.path.getsize(p) for p in (home / "state.db", home / "state.db-wal") if p.exists())


def restarts(sb: Stackblaze) -> int:
    return sum(int(r["restart_count"]) for r in sb.replicas("crasher"))


@pytest.mark.timeout(600)
def test_an_hour_of_100_replicas_crash_looping(sb: Stackblaze, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", f"""\
project: loop
services:
  - name: crasher
    start: sh crash.sh
    replicas: {REPLICAS}
""", {"crash.sh": CRASH})
    started = time.monotonic()
    sb.run("deploy", str(project), check=False, timeout=300)  # exit 1: a crash loop never becomes available
    before = db_size(sb.home)
    wait_for("an hour's worth of restarts", lambda: restarts(sb) >= REPLICAS * RESTARTS_PER_HOUR, timeout=400,
             interval=1.0)
    took = time.monotonic() - started
    events = sb.events(limit=100_000)
    exits = [e for e in events if e["kind"] == "exit"]
    biggest = max(len(json.dumps(e["details"])) for e in exits)
    lines = max(len(e["details"]["last_lines"]) for e in exits)
    longest = max(len(line.encode()) for e in exits for line in e["details"]["last_lines"])
    size = db_size(sb.home)
    print(f"\n{restarts(sb)} restarts of {REPLICAS} replicas in {took:.0f} s (= {took / 0.01 / 3600:.1f} platform "
          f"hours), {len(events)} events kept ({len(exits)} exits); state.db+wal {before / 1e6:.1f} MB after the "
          f"deploy -> {size / 1e6:.1f} MB; biggest exit details {biggest} B, at most {lines} last lines of at "
          f"most {longest} B")
    assert size < 50_000_000
    assert biggest <= EventLimits().details_bytes
    assert lines <= EventLimits().lines and longest <= EventLimits().line_bytes + 64


@pytest.mark.timeout(600)
def test_days_of_exits_at_the_size_cap_stop_growing_the_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))
    line = "E" * 2000
    now = time.time()
    sizes = []
    for n in range(30_000):
        store.add_event(project="loop", service="crasher", replica=n % REPLICAS + 1, kind="exit",
                        message=f"crasher.{n % REPLICAS + 1} exited (exit 1)", at=now - 30_000 + n,
                        details={"code": 1, "ran_for": 0.05, "last_lines": [line] * 25 + ["F" * 20_000]})
        if n % 5000 == 4999:
            sizes.append(db_size(tmp_path))
    kept, total = store.connection.execute("SELECT count(*), sum(size) FROM events").fetchone()
    wal = tmp_path / "state.db-wal"
    print(f"\n30,000 exit events at the size cap: {kept} kept ({total / 1e6:.1f} MB of text); state.db+wal after "
          f"each 5,000: {', '.join(f'{s / 1e6:.1f}' for s in sizes)} MB (wal {wal.stat().st_size / 1e6:.1f} MB)")
    assert kept <= EventLimits().max_count + 100
    assert total <= EventLimits().max_bytes + 100 * EventLimits().details_bytes
    assert max(sizes) < 50_000_000
    assert sizes[-1] <= sizes[2] * 1.1, "the file kept growing once the limits were reached"
