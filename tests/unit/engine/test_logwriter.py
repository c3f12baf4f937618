"""The runner's log format: every line kept, timestamped and tagged; long lines split, never dropped."""

from __future__ import annotations

from pathlib import Path

from stackblaze.engine.local.logwriter import MAX_LINE, LineSplitter, LogFile

NOW = 1_796_000_000.123456


def records(parts: list[bytes]) -> list[list[bytes]]:
    return [line.split(b" ", 3) for line in b"".join(parts).splitlines()]


def test_lines_get_a_timestamp_stream_and_full_tag() -> None:
    out = LineSplitter("stderr").feed(b"one\ntwo\n", now=NOW)
    assert records(out) == [
        [b"2026-11-30T00:53:20.123456Z", b"stderr", b"F", b"one"],
        [b"2026-11-30T00:53:20.123456Z", b"stderr", b"F", b"two"],
    ]


def test_a_line_cut_across_reads_is_joined() -> None:
    splitter = LineSplitter("stdout")
    assert splitter.feed(b"hel", now=NOW) == []
    out = splitter.feed(b"lo\nwor", now=NOW) + splitter.feed(b"ld\n", now=NOW)
    assert [r[3] for r in records(out)] == [b"hello", b"world"]


def test_last_line_without_newline_is_kept_at_eof() -> None:
    splitter = LineSplitter("stdout")
    splitter.feed(b"a\nno newline", now=NOW)
    assert records(splitter.flush(now=NOW)) == [[b"2026-11-30T00:53:20.123456Z", b"stdout", b"F", b"no newline"]]
    assert splitter.flush(now=NOW) == []


def test_long_line_is_split_into_partials_and_reassembles() -> None:
    line = bytes(range(65, 91)) * (3 * MAX_LINE // 26 + 7)
    out = LineSplitter("stdout").feed(line + b"\nshort\n", now=NOW)
    parts = records(out)
    tags = [p[2] for p in parts]
    assert tags == [b"P", b"P", b"P", b"F", b"F"]
    assert b"".join(p[3] for p in parts[:4]) == line
    assert all(len(p[3]) <= MAX_LINE for p in parts)


def test_long_unfinished_line_is_written_as_partials_before_its_end_arrives() -> None:
    splitter = LineSplitter("stdout")
    first = splitter.feed(b"x" * (MAX_LINE * 2 + 5), now=NOW)
    assert [r[2] for r in records(first)] == [b"P", b"P"]
    rest = splitter.feed(b"yy\n", now=NOW)
    assert records(rest)[0][2:] == [b"F", b"xxxxxyy"]


def test_rotation_renames_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    log = LogFile(str(path), max_bytes=100, max_files=3)
    for i in range(10):
        log.write([f"{i:02d}".encode() * 30, b"\n"])  # 61 bytes: every second write rotates
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["1.log", "1.log.1", "1.log.2"]
    assert path.read_bytes() == b""  # the 10th write filled 1.log past 100 bytes and rotated it
    assert (tmp_path / "1.log.1").read_bytes().startswith(b"08")
    assert (tmp_path / "1.log.2").read_bytes().startswith(b"06")
