"""A drain's cursor: reads every line once through the runner's real rotation, holds the files it still
needs across rotation and restarts, and counts (never hides) what it has to let go."""

from __future__ import annotations

from pathlib import Path

from stackblaze.engine.local.logwriter import LineSplitter, LogFile
from stackblaze.logs.drains.cursor import Batch, LogCursor, Position

NOW = 1_796_000_000.5


class Worker:
    """One replica's log, written the way the runner writes it (LogFile rotates by rename at max_bytes)."""

    def __init__(self, logs: Path, service: str = "w", replica: int = 1, *, max_bytes: int = 4096,
                 max_files: int = 5) -> None:
        self.file = LogFile(str(logs / service / f"{replica}.log"), max_bytes=max_bytes, max_files=max_files)
        self.splitter = LineSplitter("stdout")
        self.count = 0

    def lines(self, n: int) -> None:
        for _ in range(n):
            self.file.write(self.splitter.feed(f"line {self.count:06d}\n".encode(), now=NOW))
            self.count += 1


def drain_all(cursor: LogCursor, *, max_bytes: int = 64 * 1024) -> tuple[list[str], list[Batch]]:
    """Read and acknowledge until nothing is left; the lines' texts in order, and the batches."""
    texts: list[str] = []
    batches: list[Batch] = []
    while True:
        batch = cursor.next_batch(max_bytes)
        if batch.empty:
            return texts, batches
        for chunk in batch.chunks:
            texts.extend(raw.split(b" ", 3)[3].decode() for raw in chunk.data.splitlines())
        cursor.commit(batch)
        batches.append(batch)


def cursor_for(tmp_path: Path, positions: dict[tuple[str, int], Position] | None = None,
               max_held_bytes: int = 1 << 30) -> LogCursor:
    return LogCursor(project_dir=tmp_path / "logs", holds_dir=tmp_path / "holds", service=None,
                     positions=positions or {}, max_held_bytes=max_held_bytes)


def test_reads_every_line_once_across_many_rotations(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "logs")
    cursor = cursor_for(tmp_path)
    seen: list[str] = []
    for _ in range(20):  # the worker outpaces the rotation chain between reads only when the drain is held
        worker.lines(37)
        seen += drain_all(cursor, max_bytes=1000)[0]
    assert seen == [f"line {i:06d}" for i in range(worker.count)]
    assert len(list((tmp_path / "logs" / "w").iterdir())) == 5  # it did rotate, and the oldest were deleted


def test_a_drain_that_is_behind_loses_nothing_to_rotation(tmp_path: Path) -> None:
    """The runner keeps 5 files; the drain held its files while 30 rotations went by."""
    worker = Worker(tmp_path / "logs", max_bytes=2048)
    cursor = cursor_for(tmp_path)
    worker.lines(1)
    assert drain_all(cursor)[0] == ["line 000000"]  # the drain now knows (and holds) the live file
    for _ in range(30):
        worker.lines(60)
        cursor.behind()  # `drains list` scans (and pins) as it counts
    assert cursor.behind() == worker.count - 1
    texts, batches = drain_all(cursor)
    assert texts == [f"line {i:06d}" for i in range(1, worker.count)]
    assert sum(b.dropped for b in batches) == 0 and cursor.behind() == 0
    held = list((tmp_path / "holds" / "w" / "1").iterdir())
    assert len(held) == 1  # once delivered, only the live file is still held


def test_restart_resumes_from_the_saved_position_with_the_held_files(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "logs", max_bytes=2048)
    first = cursor_for(tmp_path)
    worker.lines(10)
    texts, batches = drain_all(first)
    saved = batches[-1].positions
    worker.lines(100)
    first.behind()  # seen and pinned, not delivered
    first.close()  # the daemon dies (kill -9 leaves the hard links on disk)
    worker.lines(100)  # two more rotations while it is down
    second = cursor_for(tmp_path, positions=saved)
    texts2, batches2 = drain_all(second)
    assert texts + texts2 == [f"line {i:06d}" for i in range(worker.count)]
    assert [loss for b in batches2 for loss in b.losses] == []


def test_a_chain_that_turned_over_while_the_daemon_was_down_is_reported_as_a_possible_gap(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "logs", max_bytes=2048)
    first = cursor_for(tmp_path)
    worker.lines(10)
    saved = drain_all(first)[1][-1].positions
    first.close()
    worker.lines(600)  # ~12 rotations: files came and went that no one saw
    texts, batches = drain_all(cursor_for(tmp_path, positions=saved))
    losses = [loss for b in batches for loss in b.losses]
    assert [loss.lines for loss in losses] == [None] and "daemon was down" in losses[0].reason
    numbers = [int(t.split()[1]) for t in texts]
    assert numbers == sorted(numbers) and numbers[-1] == worker.count - 1


def test_a_new_drain_starts_after_what_was_already_written(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "logs")
    worker.lines(50)
    cursor = cursor_for(tmp_path)
    start = cursor.start_at_end()
    assert list(start) == [("w", 1)]
    worker.lines(3)
    assert drain_all(cursor)[0] == ["line 000050", "line 000051", "line 000052"]
    second = Worker(tmp_path / "logs", replica=2)  # a replica that appears later: from its first line
    second.lines(2)
    assert drain_all(cursor)[0] == ["line 000000", "line 000001"]


def test_past_the_retention_cap_the_oldest_files_go_and_every_lost_line_is_counted(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "logs", max_bytes=2048)
    cursor = cursor_for(tmp_path, max_held_bytes=8192)
    worker.lines(1)
    drain_all(cursor)
    for _ in range(40):  # ~24 files written, at most 5 in the chain + 8 KiB of held ones kept
        worker.lines(50)
        cursor.behind()
    texts, batches = drain_all(cursor)
    dropped = sum(b.dropped for b in batches)
    assert dropped > 0
    assert len(texts) + dropped == worker.count - 1  # delivered + dropped = everything: nothing silent
    numbers = [int(t.split()[1]) for t in texts]
    assert numbers == sorted(numbers) and numbers[-1] == worker.count - 1
    assert all(loss.lines for b in batches for loss in b.losses)


def test_only_whole_lines_are_read_and_the_rest_waits(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "w" / "1.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"2026-11-30T10:00:00.000000Z stdout F one\n2026-11-30T10:00:00.000000Z stdout F tw")
    cursor = cursor_for(tmp_path)
    assert drain_all(cursor)[0] == ["one"]
    with open(path, "ab") as handle:
        handle.write(b"o\n")
    assert drain_all(cursor)[0] == ["two"]
    assert cursor.behind() == 0


def test_removing_a_drain_lets_go_of_its_held_files(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "logs")
    worker.lines(5)
    cursor = cursor_for(tmp_path)
    drain_all(cursor)
    assert (tmp_path / "holds").exists()
    cursor.close(forget=True)
    assert not (tmp_path / "holds").exists()
