"""Where a drain is in a project's log files: a persisted {inode, offset} per replica, read through rotation.

The runner rotates by rename (`n.log` -> `n.log.1` ... `n.log.4`) and unlinks the oldest. A drain pins
every file it still needs with a hard link of its own (`<holds>/<service>/<replica>/<seq>-<inode>`), so a
rename or an unlink never frees a line the drain has not delivered, and the links survive a daemon
restart. The only way to lose lines is to go past `max_held_bytes` of pinned files that rotation already
removed (a receiver down for a long time): the oldest are let go and their undelivered lines are counted,
exactly, as dropped. Lines written and rotated away entirely while the daemon was down cannot be counted;
that is reported as a possible gap.

Methods run in worker threads (the daemon calls them through asyncio.to_thread); one lock serialises them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from stackblaze.logs.reader import find_logs

_TEMP_NAMES = itertools.count()
HOLD_RE = re.compile(r"^(\d{12})-(\d+)$")
COUNT_BLOCK = 1 << 20
DEFAULT_MAX_HELD_BYTES = 1 << 30

Key = tuple[str, int]  # (service, replica)


@dataclass(frozen=True)
class Position:
    inode: int
    offset: int


@dataclass(frozen=True)
class Chunk:
    """Whole CRI lines of one replica, each ending with a newline, read from `offset` of file `inode`."""

    service: str
    replica: int
    inode: int
    offset: int
    data: bytes
    lines: int


@dataclass(frozen=True)
class Loss:
    """Lines that will never be delivered: `lines` counted exactly, or None when they could not be."""

    service: str
    replica: int
    lines: int | None
    reason: str


@dataclass
class Batch:
    chunks: list[Chunk] = field(default_factory=list)
    positions: dict[Key, Position] = field(default_factory=dict)  # where each cursor goes once acknowledged
    losses: list[Loss] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(chunk.lines for chunk in self.chunks)

    @property
    def dropped(self) -> int:
        return sum(loss.lines or 0 for loss in self.losses)

    @property
    def empty(self) -> bool:
        return not self.chunks and not self.positions and not self.losses


@dataclass
class Segment:
    seq: int
    inode: int
    path: Path  # our hard link; the chain's own name when linking is impossible (then `pinned` holds it)
    size: int = -1  # known once the file left the chain and can no longer grow
    pinned: int | None = None  # an open fd, when the file could not be hard-linked

    def read(self, offset: int, limit: int) -> bytes:
        if self.pinned is not None:
            return os.pread(self.pinned, limit, offset)
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            return handle.read(limit)

    def count_lines(self, offset: int) -> int:
        count = 0
        while True:
            block = self.read(offset, COUNT_BLOCK)
            if not block:
                return count
            count += block.count(b"\n")
            offset += len(block)

    def file_size(self) -> int:
        if self.pinned is not None:
            return os.fstat(self.pinned).st_size
        return os.stat(self.path).st_size

    def release(self) -> None:
        if self.pinned is not None:
            os.close(self.pinned)
            self.pinned = None
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class _Replica:
    def __init__(self, service: str, replica: int, holds: Path, position: Position | None) -> None:
        self.service = service
        self.replica = replica
        self.holds = holds
        self.position = position
        self.segments: list[Segment] = []
        self.fresh = True  # not scanned since the cursor was (re)loaded: a gap is only possible then
        if holds.is_dir():
            for entry in sorted(holds.iterdir()):
                match = HOLD_RE.match(entry.name)
                if match is None:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()  # a link left half-made by a crash
                    continue
                self.segments.append(Segment(int(match.group(1)), int(match.group(2)), entry))
        if position is not None:
            index = self.index_of(position.inode)
            if index is not None:  # everything before the cursor's file was delivered before a crash
                for segment in self.segments[:index]:
                    segment.release()
                del self.segments[:index]

    @property
    def key(self) -> Key:
        return (self.service, self.replica)

    def index_of(self, inode: int) -> int | None:
        return next((i for i, s in enumerate(self.segments) if s.inode == inode), None)

    def scan(self, chain: tuple[Path, ...]) -> tuple[set[int], list[Loss]]:
        """Pin the chain's files that are new (newest first, until one we know); return the chain's inodes."""
        known = {segment.inode for segment in self.segments}
        inodes: set[int] = set()
        found: list[Segment] = []
        stop = False
        for path in reversed(chain):  # newest first: rotation only moves files towards older names
            try:
                inode = os.stat(path).st_ino
            except FileNotFoundError:
                continue
            inodes.add(inode)
            if stop or inode in known or any(s.inode == inode for s in found):
                stop = True
                continue
            if not self.segments and self.position is not None and inode == self.position.inode:
                stop = True  # the file the new cursor starts in: older files are not wanted
            segment = self._pin(path)
            if segment is None:
                continue
            inodes.add(segment.inode)
            if segment.inode in known or any(s.inode == segment.inode for s in found):
                segment.release()  # renamed between stat and link: we hold that file already
                continue
            found.append(segment)
        losses: list[Loss] = []
        if self.fresh and found and self.segments and self.segments[-1].inode not in inodes:
            losses.append(Loss(self.service, self.replica, None,
                               "log files rotated away while the daemon was down; lines written then may be missing"))
        self.fresh = False
        seq = self.segments[-1].seq + 1 if self.segments else 1
        for segment in reversed(found):
            segment.seq = seq
            seq += 1
            if segment.pinned is None:
                final = self.holds / f"{segment.seq:012d}-{segment.inode}"
                os.replace(segment.path, final)
                segment.path = final
            self.segments.append(segment)
        if self.position is not None and self.index_of(self.position.inode) is None:
            if self.segments:
                losses.append(Loss(self.service, self.replica, None,
                                   "the file holding the cursor was gone; restarted at the oldest file kept"))
            self.position = None
        return inodes, losses

    def _pin(self, path: Path) -> Segment | None:
        self.holds.mkdir(parents=True, exist_ok=True)
        temp = self.holds / f"tmp-{os.getpid()}-{next(_TEMP_NAMES)}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        try:
            os.link(path, temp)
        except FileNotFoundError:
            return None
        except OSError:  # no hard links here (another filesystem): hold it open instead, for this process
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            return Segment(0, os.fstat(fd).st_ino, path, pinned=fd)
        return Segment(0, os.stat(temp).st_ino, temp)

    def start(self) -> tuple[int, int]:
        """The index of the cursor's segment and the offset in it."""
        if self.position is None:
            return 0, 0
        index = self.index_of(self.position.inode)
        assert index is not None
        return index, self.position.offset


class LogCursor:
    """One drain's read position in every replica log of a project (or of one service in it)."""

    def __init__(self, *, project_dir: Path, holds_dir: Path, service: str | None,
                 positions: dict[Key, Position], max_held_bytes: int = DEFAULT_MAX_HELD_BYTES) -> None:
        self._project_dir = project_dir
        self._holds_dir = holds_dir
        self._service = service
        self._max_held = max_held_bytes
        self._lock = threading.Lock()
        self._replicas: dict[Key, _Replica] = {}
        self._losses: list[Loss] = []  # found by a scan, reported with the next batch
        keys = set(positions)
        if holds_dir.is_dir():
            for service_dir in holds_dir.iterdir():
                for replica_dir in service_dir.iterdir() if service_dir.is_dir() else ():
                    if replica_dir.name.isdigit():
                        keys.add((service_dir.name, int(replica_dir.name)))
        for key in sorted(keys):
            self._replicas[key] = self._replica(key, positions.get(key))

    def _replica(self, key: Key, position: Position | None) -> _Replica:
        return _Replica(key[0], key[1], self._holds_dir / key[0] / str(key[1]), position)

    def start_at_end(self) -> dict[Key, Position]:
        """A new drain: begin after what every replica has written so far (later replicas: from their start)."""
        with self._lock:
            for log in find_logs(self._project_dir, self._service):
                key = (log.service, log.replica)
                try:
                    stat = os.stat(log.live)
                except FileNotFoundError:
                    continue
                replica = self._replicas[key] = self._replica(key, Position(stat.st_ino, stat.st_size))
                replica.scan(log.files)
                replica.fresh = False
            return {key: r.position for key, r in self._replicas.items() if r.position is not None}

    def next_batch(self, max_bytes: int) -> Batch:
        """Up to `max_bytes` of whole lines, shared fairly among the replicas that have some."""
        with self._lock:
            batch = Batch()
            held = self._scan()
            batch.losses.extend(self._losses)
            self._losses.clear()
            self._enforce_cap(batch, held)
            replicas = list(self._replicas.values())
            share = max(max_bytes // max(len(replicas), 1), 64 * 1024)
            budget = max_bytes
            for replica in replicas:
                if budget <= 0:
                    break
                taken = self._read(replica, max(min(share, budget), 64 * 1024), batch)
                budget -= taken
            return batch

    def commit(self, batch: Batch) -> None:
        """The batch was acknowledged (and saved): move the cursors and let go of the files passed."""
        with self._lock:
            for key, position in batch.positions.items():
                replica = self._replicas.get(key)
                if replica is None:
                    continue
                replica.position = position
                index = replica.index_of(position.inode)
                if index:
                    for segment in replica.segments[:index]:
                        segment.release()
                    del replica.segments[:index]

    def watch(self) -> None:
        """Pin the files rotation created since the last look. Done often, whatever delivery is doing: a file
        that comes and goes unseen could not even be counted."""
        with self._lock:
            self._scan()

    def behind(self) -> int:
        """Lines written but not yet delivered (whole lines only)."""
        with self._lock:
            self._scan()
            total = 0
            for replica in self._replicas.values():
                if not replica.segments:
                    continue
                index, offset = replica.start()
                for segment in replica.segments[index:]:
                    total += segment.count_lines(offset)
                    offset = 0
            return total

    def close(self, *, forget: bool = False) -> None:
        with self._lock:
            for replica in self._replicas.values():
                for segment in replica.segments:
                    if segment.pinned is not None or forget:
                        segment.release()
            self._replicas.clear()
            if forget:
                shutil.rmtree(self._holds_dir, ignore_errors=True)

    # -- inside the lock -----------------------------------------------------------------------------

    def _scan(self) -> set[int]:
        in_chain: set[int] = set()
        for log in find_logs(self._project_dir, self._service):
            key = (log.service, log.replica)
            replica = self._replicas.get(key)
            if replica is None:
                replica = self._replicas[key] = self._replica(key, None)
            inodes, losses = replica.scan(log.files)
            in_chain |= inodes
            self._losses.extend(losses)
        return in_chain

    def _enforce_cap(self, batch: Batch, in_chain: set[int]) -> None:
        """Pinned files that rotation removed cost disk the runner's limits do not cover: keep at most
        `max_held_bytes` of them; the oldest go first and their undelivered lines count as dropped."""
        out: list[tuple[int, _Replica, Segment]] = []
        for replica in self._replicas.values():
            for segment in replica.segments:
                if segment.inode not in in_chain:
                    if segment.size < 0:
                        segment.size = segment.file_size()
                    out.append((segment.seq, replica, segment))
        total = sum(segment.size for _, _, segment in out)
        for _, replica, segment in sorted(out, key=lambda item: (item[0], item[1].key)):
            if total <= self._max_held:
                break
            total -= segment.size
            index, offset = replica.start()
            position = replica.index_of(segment.inode)
            assert position is not None
            if position < index:
                continue
            lines = segment.count_lines(offset if position == index else 0)
            following = replica.segments[position + 1] if position + 1 < len(replica.segments) else None
            if following is None:
                continue  # never drop the only file left: it is where new lines would go
            # Move the cursor past the dropped file now; the move is saved with the next batch.
            replica.position = Position(following.inode, 0)
            batch.positions[replica.key] = replica.position
            batch.losses.append(Loss(replica.service, replica.replica, lines,
                                     f"over the {self._max_held >> 20} MiB kept for an undelivered drain"))

    def _read(self, replica: _Replica, limit: int, batch: Batch) -> int:
        if not replica.segments:
            return 0
        index, offset = replica.start()
        while True:
            segment = replica.segments[index]
            last = index == len(replica.segments) - 1  # an older file is complete: the runner moved on
            data = segment.read(offset, limit)
            cut = consumed = data.rfind(b"\n") + 1
            if data and cut == 0 and not last:
                consumed = len(data)  # an unterminated tail (or garbage) in a finished file: deliver it
                data, cut = data + b"\n", len(data) + 1
            if cut:
                batch.chunks.append(Chunk(replica.service, replica.replica, segment.inode, offset, data[:cut],
                                          data.count(b"\n", 0, cut)))
                batch.positions[replica.key] = Position(segment.inode, offset + consumed)
                return cut
            if last:
                return 0
            index, offset = index + 1, 0
            batch.positions[replica.key] = Position(replica.segments[index].inode, 0)
