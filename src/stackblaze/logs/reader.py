"""Reading replica log files: the last N lines, lines since a time, and following them live.

Files live at `<logs>/<project>/<service>/<replica>.log`, rotated to `.log.1` (newest) ... `.log.K`.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stackblaze.logs.record import LogRecord, parse_cri

FILE_RE = re.compile(r"^(\d+)\.log(?:\.(\d+))?$")
BLOCK = 64 * 1024
MAX_LINE = 1 << 20  # a longer line (not one the runner writes) is read in pieces


@dataclass(frozen=True)
class ReplicaLog:
    service: str
    replica: int
    files: tuple[Path, ...]  # oldest first; the last one is the live file

    @property
    def live(self) -> Path:
        return self.files[-1]


def find_logs(project_dir: Path, service: str | None = None, replica: int | None = None) -> list[ReplicaLog]:
    result: list[ReplicaLog] = []
    if not project_dir.is_dir():
        return result
    for service_dir in sorted(project_dir.iterdir()):
        if not service_dir.is_dir() or (service is not None and service_dir.name != service):
            continue
        by_replica: dict[int, list[tuple[int, Path]]] = {}
        for path in service_dir.iterdir():
            match = FILE_RE.match(path.name)
            if match is None:
                continue
            number = int(match.group(1))
            if replica is not None and number != replica:
                continue
            age = int(match.group(2) or 0)
            by_replica.setdefault(number, []).append((age, path))
        for number, files in sorted(by_replica.items()):
            ordered = tuple(path for _, path in sorted(files, key=lambda f: -f[0]))
            result.append(ReplicaLog(service_dir.name, number, ordered))
    return result


def _records(log: ReplicaLog, data: bytes) -> Iterator[LogRecord]:
    for raw in data.split(b"\n"):
        if raw:
            record = parse_cri(raw, service=log.service, replica=log.replica)
            if record is not None:
                yield record


def _forward(path: Path, start: int, end: int | None) -> Iterator[bytes]:
    """The lines of `path` from byte `start` up to `end` (default: its end now), oldest first. A line longer
    than MAX_LINE (the runner splits at 16 KiB: never one of ours) comes in pieces, so memory stays bounded."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        left = (os.fstat(handle.fileno()).st_size if end is None else end) - start
        handle.seek(start)
        while left > 0:
            raw = handle.readline(min(left, MAX_LINE))
            if not raw:
                return
            left -= len(raw)
            yield raw.rstrip(b"\n")


def _backward(path: Path, end: int | None) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for the lines of `path` before byte `end`, newest first, read in blocks from the end."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        position = os.fstat(handle.fileno()).st_size if end is None else end
        carry = b""  # the start of the region read so far: the end of a line that begins further back
        while position > 0:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            pieces = (handle.read(step) + carry).split(b"\n")
            carry = pieces[0][:MAX_LINE]  # its beginning (the time) is what matters; keep memory bounded
            offset = position + len(pieces[0]) + 1
            found = []
            for piece in pieces[1:]:
                found.append((offset, piece))
                offset += len(piece) + 1
            for item in reversed(found):
                if item[1]:
                    yield item
        if carry:
            yield 0, carry


def _at(raw: bytes) -> str | None:
    """A CRI line's time, without decoding the rest; None for a line that is not ours (as parse_cri)."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    return parts[0].decode("ascii", "replace")


def _backward_log(index: int, log: ReplicaLog, limits: dict[Path, int]) -> Iterator[tuple[str, int, int, int, bytes]]:
    """(time, log index, file index, offset, line) for every line of a replica, newest first."""
    for file_index in range(len(log.files) - 1, -1, -1):
        path = log.files[file_index]
        for offset, raw in _backward(path, limits.get(path)):
            at = _at(raw)
            if at is not None:
                yield at, index, file_index, offset, raw


def _forward_log(log: ReplicaLog, file_index: int, offset: int, limits: dict[Path, int]) -> Iterator[LogRecord]:
    for number, path in enumerate(log.files[file_index:], start=file_index):
        for raw in _forward(path, offset if number == file_index else 0, limits.get(path)):
            record = parse_cri(raw, service=log.service, replica=log.replica)
            if record is not None:
                yield record


def last_records(logs: Iterable[ReplicaLog], count: int | None, *, since: str = "",
                 keep: Callable[[LogRecord], bool] | None = None, limits: dict[Path, int] | None = None,
                 ) -> Iterator[LogRecord]:
    """The last `count` records (every one when None) at or after `since` (RFC 3339 text) that `keep`
    accepts, over all the replicas, merged in time order and streamed: memory does not grow with `count`.

    Two passes: the first reads the files backwards, newest line first over all replicas, until `count`
    records are taken or one is older than `since`, noting only where each replica's share begins; the
    second reads forward from there and yields them."""
    if count is not None and count <= 0:
        return
    logs = list(logs)
    limits = limits or {}
    starts: dict[int, tuple[int, int]] = {}
    taken = 0
    newest_first = heapq.merge(*(_backward_log(i, log, limits) for i, log in enumerate(logs)),
                               key=lambda item: item[0], reverse=True)
    for at, index, file_index, offset, raw in newest_first:
        if at < since:
            break  # every line after it in this order is older still
        if keep is not None:
            record = parse_cri(raw, service=logs[index].service, replica=logs[index].replica)
            if record is None or not keep(record):
                continue
        starts[index] = (file_index, offset)
        taken += 1
        if taken == count:
            break
    streams = []
    for index, (file_index, offset) in sorted(starts.items()):
        records = _forward_log(logs[index], file_index, offset, limits)
        streams.append(r for r in records if r.at >= since and (keep is None or keep(r)))
    yield from heapq.merge(*streams, key=lambda r: r.at)


def tail_records(
    logs: Iterable[ReplicaLog], count: int, *, limits: dict[Path, int] | None = None
) -> list[LogRecord]:
    """The last `count` records over all the replicas, merged in time order."""
    return list(last_records(logs, count, limits=limits))


def records_since(logs: Iterable[ReplicaLog], since: str, *, limits: dict[Path, int] | None = None
                  ) -> Iterator[LogRecord]:
    """Every record at or after `since` (RFC 3339 text), merged in time order."""
    return last_records(logs, None, since=since, limits=limits)


class Follower:
    """Reads what is appended to every replica file of a service, across rotations and new replicas."""

    def __init__(self, project_dir: Path, service: str | None, replica: int | None = None) -> None:
        self._project_dir = project_dir
        self._service = service
        self._replica = replica
        self._open: dict[Path, tuple[ReplicaLog, BinaryIO, bytes]] = {}
        self.limits: dict[Path, int] = {}
        for log in find_logs(project_dir, service, replica):
            handle = open(log.live, "rb")
            handle.seek(0, os.SEEK_END)
            self._open[log.live] = (log, handle, b"")
            self.limits[log.live] = handle.tell()

    def poll(self) -> list[LogRecord]:
        found: list[LogRecord] = []
        for log in find_logs(self._project_dir, self._service, self._replica):
            if log.live not in self._open:
                try:
                    self._open[log.live] = (log, open(log.live, "rb"), b"")
                except FileNotFoundError:
                    continue
        for path, (log, handle, pending) in list(self._open.items()):
            data = pending + handle.read()
            try:
                rotated = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                rotated = True
            if rotated:
                data += handle.read()  # whatever was written before the rename
                handle.close()
                found.extend(_records(log, data))  # the old file is complete, its last line too
                try:
                    handle = open(path, "rb")
                except FileNotFoundError:
                    del self._open[path]
                    continue
                # the new file's first lines now: a follower woken by the rotation may get no later wake-up
                data = handle.read()
            cut = data.rfind(b"\n") + 1
            self._open[path] = (log, handle, data[cut:])
            found.extend(_records(log, data[:cut]))
        found.sort(key=lambda r: r.at)
        return found

    def close(self) -> None:
        for _, handle, _ in self._open.values():
            handle.close()
        self._open.clear()
