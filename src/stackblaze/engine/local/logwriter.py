"""CRI-format log files for replicas: timestamped, stream-tagged lines, rotated by rename and reopen.

Used by the runner, so it stays on the standard library and does per-chunk (not per-line) Python work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime

MAX_LINE = 16 * 1024  # longer lines are split into partial (P) records, never dropped


def format_timestamp(now: float) -> bytes:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


class LogFile:
    """One replica's log file; shared by every instance that writes to the same path."""

    def __init__(self, path: str, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.users = 0
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, parts: Sequence[bytes | memoryview]) -> None:
        """Append the pieces with one writev (no joining copy); a short write finishes with plain writes."""
        if not parts:
            return
        total = sum(map(len, parts))
        written = os.writev(self._fd, parts)
        if written < total:
            rest = memoryview(b"".join(parts))[written:]
            while rest:
                rest = rest[os.write(self._fd, rest) :]
        self._size += total
        if self._size >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Rename path -> path.1 -> path.2 ..., keep max_files in all, then reopen a fresh path."""
        os.close(self._fd)
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
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


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
