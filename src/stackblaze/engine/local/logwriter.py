"""CRI-format log files for replicas: timestamped, stream-tagged lines, rotated by rename and reopen.

Used by the runner, so it stays on the standard library and does per-chunk (not per-line) Python work.
"""

from __future__ import annotations

import errno
import os
import resource
import time
from collections.abc import Sequence
from datetime import UTC, datetime

MAX_LINE = 16 * 1024  # longer lines are split into partial (P) records, never dropped
IOV_MAX = 1024  # writev takes at most this many pieces (Linux)


def _file_size_limit() -> int | None:
    """The runner's RLIMIT_FSIZE (soft), None when unlimited: a write that crosses it stops inside a record."""
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def format_timestamp(now: float) -> bytes:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


class LogFile:
    """One replica's log file; shared by every instance that writes to the same path.

    It never raises on a write error (ENOSPC, EDQUOT, EIO, EFBIG...): the lines that could not be written
    are dropped, counted by the caller from `write`'s answer, and the next write tries again (so writing
    resumes by itself, with no retry loop). A record is written whole or not at all."""

    def __init__(self, path: str, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.users = 0
        self.error: OSError | None = None  # why the last write failed; None once one succeeds
        self._fd: int | None = None
        self._torn = False  # the file ends inside a record that could not be cut off
        self._size = 0
        self._limit = _file_size_limit()  # set on the runner before it starts: read once, not per write
        self._open()

    def _open(self) -> bool:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            self.error = exc
            return False
        self._fd = fd
        self._size = os.fstat(fd).st_size
        return True

    def write(self, parts: Sequence[bytes | memoryview]) -> int:
        """Append the pieces, with one writev where it can (no joining copy); returns how many lines
        could not be written (0: all were)."""
        if not parts:
            return 0
        if self._fd is None and not self._open():
            return _count_lines(parts)
        assert self._fd is not None
        total = sum(map(len, parts))
        if self._limit is not None and self._size + total > self._limit:
            return self._write_what_fits(parts, self._limit - self._size)
        try:
            if self._torn:
                self._size += os.write(self._fd, b"\n")
                self._torn = False
            written = os.writev(self._fd, parts) if len(parts) <= IOV_MAX else 0
        except OSError as exc:
            self.error = exc
            return _count_lines(parts)
        if written < total:
            data = memoryview(b"".join(parts))
            while written < total:
                try:
                    written += os.write(self._fd, data[written:])
                except OSError as exc:
                    return self._cut_torn_record(data, written, exc)
        self._size += total
        self.error = None
        if self._size >= self.max_bytes:
            self.rotate()
        return 0

    def _write_what_fits(self, parts: Sequence[bytes | memoryview], room: int) -> int:
        """Under a file-size limit: the whole records that fit in `room` bytes, and EFBIG for the rest, so a
        reader never sees half a record, not even for the moment before _cut_torn_record would cut it off."""
        data = b"".join(parts)
        room -= self._torn  # the newline that ends a torn record goes first
        whole = data.rfind(b"\n", 0, max(0, room)) + 1
        lost = data[whole:].count(b"\n")
        if whole and self.write([data[:whole]]):  # failed after all (a full disk as well): every line is lost
            return lost + data[:whole].count(b"\n")
        self.error = OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        return lost

    def _cut_torn_record(self, data: memoryview, written: int, exc: OSError) -> int:
        """A write stopped inside a record: cut the file back to its last whole record, so the file
        never keeps half of one (a reader in between may see it: under a file-size limit _write_what_fits
        avoids even that). Returns the lines lost."""
        self.error = exc
        whole = bytes(data[:written]).rfind(b"\n") + 1
        assert self._fd is not None
        try:
            size = os.fstat(self._fd).st_size
            os.ftruncate(self._fd, size - (written - whole))  # shrinking needs no space
            self._size = size - (written - whole)
        except OSError:
            # Cannot cut (EIO): end the torn record with a newline at the next write instead.
            self._size += written
            self._torn = True
        return bytes(data[whole:]).count(b"\n")

    def rotate(self) -> None:
        """Rename path -> path.1 -> path.2 ..., keep max_files in all, then reopen a fresh path.

        A failed step (a full or broken disk) leaves the current file open, or no file: the next write
        reopens it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            oldest = f"{self.path}.{self.max_files - 1}"
            if self.max_files > 1:
                if os.path.exists(oldest):
                    os.unlink(oldest)
                for index in range(self.max_files - 2, 0, -1):
                    src = f"{self.path}.{index}"
                    if os.path.exists(src):
                        os.rename(src, f"{self.path}.{index + 1}")
                os.rename(self.path, f"{self.path}.1")
            else:
                os.unlink(self.path)
        except OSError as exc:
            self.error = exc
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _count_lines(parts: Sequence[bytes | memoryview]) -> int:
    return sum(bytes(part).count(b"\n") for part in parts)


def _may_have_long_line(data: bytes) -> bool:
    """False only when no line is longer than MAX_LINE. Any such line fully covers an aligned window of
    MAX_LINE // 2 bytes, so checking that every window holds a newline is enough (and cheap: memchr)."""
    if len(data) <= MAX_LINE:
        return False
    window = MAX_LINE // 2
    return any(data.find(b"\n", start, start + window) < 0 for start in range(0, len(data) - window + 1, window))


class LineSplitter:
    """Turns raw pipe chunks of one stream into CRI records, keeping an incomplete tail line."""

    def __init__(self, stream: str) -> None:
        self._full = b" " + stream.encode() + b" F "
        self._partial = b" " + stream.encode() + b" P "
        self._pending = b""

    def feed(self, chunk: bytes, now: float | None = None) -> list[bytes | memoryview]:
        """The records for a chunk read from the pipe, as pieces to write in order (for one writev)."""
        stamp = format_timestamp(time.time() if now is None else now)
        out: list[bytes | memoryview] = []
        end = chunk.rfind(b"\n")
        first = chunk.find(b"\n")
        if end < 0:
            self._pending += chunk
        elif len(self._pending) + first > MAX_LINE or _may_have_long_line(chunk[:end]):
            data = self._pending + chunk
            end = data.rfind(b"\n")
            out = [self._split_long(stamp, line) for line in data[:end].split(b"\n")]
            self._pending = data[end + 1 :]
        else:
            # One C-speed pass over the whole chunk, no Python object per line. The chunk is not copied
            # to join the pending piece (written first, after the prefix) or to cut the tail (a view).
            prefix = stamp + self._full
            separator = b"\n" + prefix
            records = chunk.replace(b"\n", separator)
            cut = len(records) - (len(chunk) - end - 1) - len(prefix)
            out = [prefix, self._pending, memoryview(records)[:cut]]
            self._pending = chunk[end + 1 :]
        if len(self._pending) > MAX_LINE:
            # A tail that long will never fit one record: emit whole pieces as partials now.
            cut = len(self._pending) - len(self._pending) % MAX_LINE
            head, self._pending = self._pending[:cut], self._pending[cut:]
            prefix = stamp + self._partial
            out += [prefix + head[i : i + MAX_LINE] + b"\n" for i in range(0, cut, MAX_LINE)]
        return out

    def flush(self, now: float | None = None) -> list[bytes | memoryview]:
        """At EOF: the last line had no newline; record it as a full line."""
        if not self._pending:
            return []
        stamp = format_timestamp(time.time() if now is None else now)
        out: list[bytes | memoryview] = [stamp + self._full + self._pending + b"\n"]
        self._pending = b""
        return out

    def _split_long(self, stamp: bytes, line: bytes) -> bytes:
        if len(line) <= MAX_LINE:
            return stamp + self._full + line + b"\n"
        pieces = [line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE)]
        parts = [stamp + self._partial + piece + b"\n" for piece in pieces[:-1]]
        parts.append(stamp + self._full + pieces[-1] + b"\n")
        return b"".join(parts)
