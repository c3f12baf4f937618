"""Resource samples in the SQLite store: bounded to 24 h (8,640 per replica at one every 10 s), kept across a
daemon restart, read back as columns per replica with the exits of the same window."""

from __future__ import annotations

import time
from pathlib import Path

from stackblaze.engine.protocol import USAGE_RETENTION, UsageSample
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store
from stackblaze.state.usage import UsageStore

DAY = 86_400.0


def open_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))


def samples(start: float, count: int, replica: int = 1) -> list[UsageSample]:
    return [{"project": "meters", "service": "leaker", "replica": replica, "at": start + 10.0 * n,
             "cpu": 1.5, "memory": (40 << 20) + n} for n in range(count)]


def test_two_days_of_samples_are_pruned_to_the_last_24_hours_and_survive_a_restart(tmp_path: Path) -> None:
    now = 2_000_000_000.0
    store = open_store(tmp_path)
    table = UsageStore(store)
    for day in (2, 1):  # two days at 10 s: 17,280 samples, written as the sampler writes them
        for hour in range(24):
            table.add_usage(samples(now - day * DAY + hour * 3600.0, 360))
    table.add_usage(samples(now - DAY, 360, replica=2))
    dropped = table.prune_usage(now - USAGE_RETENTION)
    assert dropped == 8_640
    store.close()

    reopened = UsageStore(open_store(tmp_path))  # the daemon restarted
    series = reopened.series("meters", "leaker", since=0.0)
    assert sorted(series) == [1, 2]
    assert len(series[1]["at"]) == 8_640 and series[1]["at"][0] == now - DAY
    assert series[1]["at"] == sorted(series[1]["at"]) and series[1]["cpu"][0] == 1.5
    last_hour = reopened.series("meters", "leaker", since=now - 3600.0, replica=1)
    assert list(last_hour) == [1] and len(last_hour[1]["at"]) == 360


def test_exits_and_restarts_of_the_window_come_with_their_code(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    table = UsageStore(store)
    T = time.time() - 3600.0  # within the events' own age limit
    store.add_event(project="meters", service="leaker", replica=1, kind="exit", at=T + 100.0,
                    message="leaker.1 exited (killed by SIGKILL)", details={"code": None, "signal": "SIGKILL",
                                                                         "meaning": "killed by SIGKILL",
                                                                         "oom_killed": True})
    store.add_event(project="meters", service="leaker", replica=1, kind="restart-scheduled", at=T + 100.1,
                    message="leaker.1 restarts in 0.00s", details={"restart_at": T + 100.1})
    store.add_event(project="meters", service="leaker", replica=1, kind="exit", at=T + 10.0, message="old", details={})
    store.add_event(project="meters", service="other", replica=1, kind="exit", at=T + 100.0, message="x", details={})
    store.add_event(project="meters", service="leaker", kind="deploy", at=T + 100.0, message="deploy", details={})
    marks = table.marks("meters", "leaker", since=T + 50.0)
    assert [(m["kind"], m["at"]) for m in marks] == [("exit", T + 100.0), ("restart-scheduled", T + 100.1)]
    assert marks[0]["signal"] == "SIGKILL" and marks[0]["oom_killed"] is True
    assert marks[1]["restart_at"] == T + 100.1


def test_destroy_deletes_the_projects_samples_only(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    table = UsageStore(store)
    now = time.time()
    table.add_usage(samples(now, 5))
    table.add_usage([{**s, "project": "other"} for s in samples(now, 3)])
    store.delete_project("meters")
    assert table.series("meters", "leaker", since=0.0) == {}
    assert len(table.series("other", "leaker", since=0.0)[1]["at"]) == 3
