"""Pod logs into the CRI files every engine keeps (`<logs>/<project>/<service>/<replica>.log`), as they arrive.

The pod log API serves stdout and stderr as one stream, so every line is written as `stdout`; it serves whole
lines, so every line is `F`. Each pod's pump resumes after the last line of its file (its timestamp, and how
many lines of the file have that timestamp), so a restarted daemon writes nothing twice. Replica numbers (a
pod takes the lowest free number of its service) are kept in `<service>/pods.json` beside the files, so a
pod keeps its number, and its file, across a daemon restart.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from stackblaze.engine.kubernetes.api import ClusterApi
from stackblaze.errors import StackblazeError

log = logging.getLogger(__name__)
NUMBERS_FILE = "pods.json"  # not a `<n>.log` name: the log readers pass over it
TAIL_BLOCK = 64 * 1024

Convert = Callable[[str], str]  # an RFC 3339 time from one clock's text to another's


class ReplicaNumbers:
    """Each pod of a service takes the lowest free number when first seen and keeps it while it lives."""

    def __init__(self, service_dir: Path) -> None:
        self._path = service_dir / NUMBERS_FILE
        try:
            saved = json.loads(self._path.read_text())
        except (OSError, ValueError):
            saved = {}
        self.numbers: dict[str, int] = {str(k): int(v) for k, v in saved.items()} if isinstance(saved, dict) else {}
        self.inherited = set(self.numbers)  # numbered by an earlier daemon: their files are theirs to resume

    def assign(self, pods: list[str]) -> dict[str, int]:
        """Numbers for these live pods (oldest first); a pod no longer listed frees its number."""
        before = dict(self.numbers)
        self.numbers = {pod: n for pod, n in self.numbers.items() if pod in pods}
        for pod in pods:
            if pod not in self.numbers:
                taken = set(self.numbers.values())
                self.numbers[pod] = next(n for n in range(1, len(taken) + 2) if n not in taken)
        if self.numbers != before:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.numbers, sort_keys=True))
                os.replace(tmp, self._path)
            except OSError as exc:
                log.warning("cannot save the replica numbers in %s: %s", self._path, exc)
        return dict(self.numbers)


class LogFile:
    """One replica's CRI file, rotated by rename (`.log.1` newest) as the local runner rotates its own."""

    def __init__(self, path: Path, *, max_bytes: int = 10 << 20, max_files: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files

    def tail(self) -> tuple[str | None, int]:
        """The last line's timestamp, and how many lines at the end of the file have it."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - TAIL_BLOCK))
                data = handle.read()
        except FileNotFoundError:
            return None, 0
        last, count = None, 0
        for raw in reversed(data.split(b"\n")):
            if not raw:
                continue
            at = raw.split(b" ", 1)[0].decode("ascii", "replace")
            if last is None:
                last = at
            if at != last:
                break
            count += 1
        return last, count

    def write(self, lines: list[tuple[str, str]]) -> None:
        if not lines:
            return
        data = "".join(f"{at} stdout F {text}\n" for at, text in lines).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        with open(self.path, "ab") as handle:
            handle.write(data)

    def _rotate(self) -> None:
        for age in range(self.max_files - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{age}")
            if older.exists():
                if age + 1 >= self.max_files:
                    older.unlink()
                else:
                    older.rename(self.path.with_name(f"{self.path.name}.{age + 1}"))
        if self.max_files > 1:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()


class PodPump:
    """One pod's log into its replica's file: the run that just ended (`previous`), then the running one
    (`follow`), each line once."""

    def __init__(self, api: ClusterApi, pod: str, namespace: str, file: LogFile, *, resume: bool,
                 to_local: Convert, to_cluster: Convert) -> None:
        self._api = api
        self.pod = pod
        self._namespace = namespace
        self.file = file
        self._to_local = to_local
        self._to_cluster = to_cluster
        # The last timestamp written for this pod, and how many lines with it: a read from there skips those.
        self._at, self._count = file.tail() if resume else (None, 0)
        self.pumped: set[int] = set()  # the runs (by restartCount) read to their end

    async def catch_up(self, run: int) -> None:
        """The run that ended last (the kubelet keeps one): what the follow did not see of it."""
        try:
            text = await self._api.logs(self.pod, self._namespace, previous=True, timestamps=True,
                                        since_time=self._since())
        except (StackblazeError, OSError) as exc:
            log.debug("no previous log of pod %s: %s", self.pod, exc)
            return
        self._write_new(text.splitlines())
        self.pumped.add(run)

    async def follow(self, run: int) -> None:
        """The running container's lines as they come, until its run ends (then the run is pumped)."""
        skip = self._count
        try:
            async for line in self._api.follow(self.pod, self._namespace, since_time=self._since()):
                skip = self._write_new([line], skip=skip)
        except (StackblazeError, OSError) as exc:
            log.debug("following pod %s ended: %s", self.pod, exc)
            return
        self.pumped.add(run)

    def _since(self) -> str | None:
        return self._to_cluster(self._at) if self._at is not None else None

    def _write_new(self, raw: list[str], *, skip: int | None = None) -> int:
        skip = self._count if skip is None else skip
        fresh: list[tuple[str, str]] = []
        for line in raw:
            stamp, _, text = line.partition(" ")
            if not stamp:
                continue
            at = self._to_local(stamp)
            if self._at is not None and at < self._at:
                continue
            if at == self._at:
                if skip > 0:
                    skip -= 1
                    continue
                self._count += 1
            else:
                self._at, self._count, skip = at, 1, 0
            fresh.append((at, text))
        self.file.write(fresh)
        return skip
