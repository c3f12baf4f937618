"""Reading replica logs: last N merged in time order, since a time, following across rotation."""

from __future__ import annotations

import os
from pathlib import Path

from stackblaze.logs.reader import Follower, find_logs, records_since, tail_records


def write(path: Path, lines: list[tuple[str, str]], mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as handle:
        for at, text in lines:
            handle.write(f"2026-11-30T10:00:{at}Z stdout F {text}\n")


def test_tail_merges_replicas_in_time_order_across_rotated_files(tmp_path: Path) -> None:
    svc = tmp_path / "worker"
    write(svc / "1.log.1", [("01.000000", "a1"), ("03.000000", "a2")])
    write(svc / "1.log", [("05.000000", "a3")])
    write(svc / "2.log", [("02.000000", "b1"), ("04.000000", "b2"), ("06.000000", "b3")])
    logs = find_logs(tmp_path, "worker")
    assert [(log.replica, [p.name for p in log.files]) for log in logs] == [
        (1, ["1.log.1", "1.log"]), (2, ["2.log"])]
    got = tail_records(logs, 4)
    assert [(r.replica, r.line) for r in got] == [(1, "a2"), (2, "b2"), (1, "a3"), (2, "b3")]
    assert [r.line for r in tail_records(logs, 100)] == ["a1", "b1", "a2", "b2", "a3", "b3"]


def test_tail_reads_backwards_through_big_files(tmp_path: Path) -> None:
    path = tmp_path / "w" / "1.log"
    write(path, [(f"{i % 60:02d}.{i:06d}", f"line {i}") for i in range(20000)])
    got = tail_records(find_logs(tmp_path), 3)
    assert [r.line for r in got] == ["line 19997", "line 19998", "line 19999"]


def test_since_filters_by_time(tmp_path: Path) -> None:
    write(tmp_path / "w" / "1.log", [("01.000000", "old"), ("09.000000", "new")])
    got = list(records_since(find_logs(tmp_path), "2026-11-30T10:00:05.000000Z"))
    assert [r.line for r in got] == ["new"]


def test_follower_sees_appends_rotation_and_new_replicas_without_losing_lines(tmp_path: Path) -> None:
    path = tmp_path / "w" / "1.log"
    write(path, [("01.000000", "before follow")])
    follower = Follower(tmp_path, "w")
    assert follower.poll() == []
    write(path, [("02.000000", "after")])
    with open(path, "a") as handle:
        handle.write("2026-11-30T10:00:03.000000Z stdout F half")  # no newline yet
    assert [r.line for r in follower.poll()] == ["after"]
    with open(path, "a") as handle:
        handle.write(" done\n")
    os.rename(path, tmp_path / "w" / "1.log.1")  # rotation: the runner renames and reopens
    write(path, [("04.000000", "fresh file")])
    write(tmp_path / "w" / "2.log", [("05.000000", "replica two")])
    got = follower.poll() + follower.poll()
    follower.close()
    got.sort(key=lambda r: r.at)
    assert [(r.replica, r.line) for r in got] == [(1, "half done"), (1, "fresh file"), (2, "replica two")]
