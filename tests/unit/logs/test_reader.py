"""Reading replica logs: last N merged in time order, since a time, following across rotation."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

from stackblaze.logs.reader import MAX_LINE, Follower, find_logs, last_records, records_since, tail_records
from stackblaze.logs.record import LogRecord


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


def test_last_records_with_a_filter_and_since_take_the_last_matching_in_time_order(tmp_path: Path) -> None:
    write(tmp_path / "w" / "1.log.1", [("01.000000", "a1 job"), ("03.000000", "a2 noise")])
    write(tmp_path / "w" / "1.log", [("05.000000", "a3 job"), ("07.000000", "a4 job")])
    write(tmp_path / "w" / "2.log", [("02.000000", "b1 job"), ("04.000000", "b2 job"), ("06.000000", "b3 noise")])
    logs = find_logs(tmp_path)

    def jobs(record: LogRecord) -> bool:
        return "job" in record.line

    assert [r.line for r in last_records(logs, 3, keep=jobs)] == ["b2 job", "a3 job", "a4 job"]
    assert [r.line for r in last_records(logs, None, keep=jobs)] == ["a1 job", "b1 job", "b2 job", "a3 job", "a4 job"]
    since = "2026-11-30T10:00:03.000000Z"
    assert [r.line for r in last_records(logs, None, since=since)] == ["a2 noise", "b2 job", "a3 job", "b3 noise",
                                                                      "a4 job"]
    assert [r.line for r in last_records(logs, 2, since=since, keep=jobs)] == ["a3 job", "a4 job"]
    assert list(last_records(logs, 0)) == []
    assert list(last_records(logs, 10, since="2026-11-30T10:00:08.000000Z")) == []


def test_last_records_skip_lines_that_are_not_ours_and_respect_limits(tmp_path: Path) -> None:
    path = tmp_path / "w" / "1.log"
    write(path, [("01.000000", "one")])
    with open(path, "a") as handle:
        handle.write("garbage without a stream tag\n\n")
    write(path, [("02.000000", "two")])
    size = path.stat().st_size
    write(path, [("03.000000", "after the limit")])
    assert [r.line for r in last_records(find_logs(tmp_path), 5, limits={path: size})] == ["one", "two"]
    assert [r.line for r in last_records(find_logs(tmp_path), 1, since="2026-11-30T10:00:01.500000Z")] == [
        "after the limit"]


def test_last_records_stream_in_bounded_memory(tmp_path: Path) -> None:
    """200,000 lines (about 20 MB of records) read with no count: the reader never holds more than a block
    and one line per replica, so the peak stays far below the file."""
    path = tmp_path / "w" / "1.log"
    write(path, [(f"{i // 10_000:02d}.{i % 1_000_000:06d}", f"line {i:06d} " + "x" * 40) for i in range(200_000)])
    tracemalloc.start()
    try:
        count = 0
        for record in last_records(find_logs(tmp_path), None):
            count += 1
            last = record.line
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 200_000 and last.startswith("line 199999 ")
    assert peak < 2 << 20, f"peak {peak / 1e6:.1f} MB for a {path.stat().st_size / 1e6:.0f} MB file"


def test_a_line_longer_than_the_cap_comes_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "w" / "1.log"
    write(path, [("01.000000", "y" * (MAX_LINE + 10)), ("02.000000", "short")])
    got = [r.line for r in last_records(find_logs(tmp_path), None)]
    assert got[-1] == "short" and got[0].startswith("yyy") and len(got[0]) < MAX_LINE
