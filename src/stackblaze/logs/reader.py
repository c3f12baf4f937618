"""Reading replica log files: the last N lines, lines since a time, and following them live.

Files live at `<logs>/<project>/<service>/<replica>.log`, rotated to `.log.1` (newest) ... `.log.K`.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stackblaze.logs.record import LogRecord, parse_cri

FILE_RE = re.compile(r"^(\d+)\.log(?:\.(\d+))?$")
BLOCK = 64 * 1024


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


def _read_upto(path: Path, limit: int | None) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read() if limit is None else handle.read(limit)
    except FileNotFoundError:
        return b""


def _last_lines(path: Path, count: int, limit: int | None) -> tuple[bytes, int]:
    """The last `count` whole lines of the file (read backwards in blocks), and how many were found."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return b"", 0
    with handle:
        end = os.fstat(handle.fileno()).st_size if limit is None else limit
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= count:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
        data = data[: end - position]
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if position > 0:
            lines = lines[1:]  # the first piece may be the tail of a line before the block
        picked = lines[-count:] if count else []
        return b"\n".join(picked), len(picked)


def tail_records(
    logs: Iterable[ReplicaLog], count: int, *, limits: dict[Path, int] | None = None
) -> list[LogRecord]:
    """The last `count` records over all the replicas, merged in time order."""
    merged: list[LogRecord] = []
    for log in logs:
        wanted = count
        chunks: list[bytes] = []
        for path in reversed(log.files):
            if wanted <= 0:
                break
            data, found = _last_lines(path, wanted, (limits or {}).get(path))
            chunks.insert(0, data)
            wanted -= found
        merged.extend(_records(log, b"\n".join(chunks)))
    merged.sort(key=lambda r: r.at)
    return merged[-count:] if count else []


def records_since(logs: Iterable[ReplicaLog], since: str, *, limits: dict[Path, int] | None = None
                  ) -> Iterator[LogRecord]:
    """Every record at or after `since` (RFC 3339 text), merged in time order."""
    streams = []
    for log in logs:
        def stream(log: ReplicaLog = log) -> Iterator[LogRecord]:
            for path in log.files:
                for record in _records(log, _read_upto(path, (limits or {}).get(path))):
                    if record.at >= since:
                        yield record
        streams.append(stream())
    return heapq.merge(*streams, key=lambda r: r.at)


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
                try:
                    fresh: BinaryIO = open(path, "rb")
                except FileNotFoundError:
                    del self._open[path]
                    found.extend(_records(log, data))
                    continue
                self._open[path] = (log, fresh, b"")
                cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1
                self._open[path] = (log, handle, data[cut:])
            found.extend(_records(log, data[:cut]))
        found.sort(key=lambda r: r.at)
        return found

    def close(self) -> None:
        for _, handle, _ in self._open.values():
            handle.close()
        self._open.clear()
