"""Every replica's CPU and memory, sampled every 10 s (× STACKBLAZE_TIME_SCALE) into a bounded store.

The files are read in a worker thread (a /proc pass can take milliseconds on a busy machine; the loop must
keep answering); the figures are computed on the loop. `ps` reads the latest figures from memory; the
samples go to a UsageSink (state/usage.py keeps 24 h × time scale of them in SQLite, pruned by age, so at
most 8,640 per replica). CPU is the percent of one core over the last interval; a replica's first sample
is its average since it started (its cgroup and its processes count from zero then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from stackblaze.engine.local.usage import (
    Groups,
    ProcTable,
    Reading,
    cgroup_mounts,
    cpu_percent,
    read_groups,
    replica_groups,
)
from stackblaze.engine.protocol import USAGE_RETENTION, UsageSample, UsageSink, usage_interval

log = logging.getLogger(__name__)

PRUNE_EVERY = 360  # samples between two prunes (an hour at full speed), and one at start


@dataclass(frozen=True)
class Target:
    """One replica process to sample: the one `ps` shows for its slot."""

    project: str
    service: str
    replica: int
    key: str  # the runner's instance key: its cgroups are named after it
    pid: int
    started_at: float


def _read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


class Sampler:
    def __init__(self, *, targets: Callable[[], list[Target]], sink: UsageSink | None, scale: float,
                 proc_root: str = "/proc") -> None:
        self._targets = targets
        self._sink = sink
        self.interval = usage_interval(scale)
        self.retention = USAGE_RETENTION * scale
        self._proc = proc_root
        self._mounts: dict[str, str] | None = None
        self._groups: dict[str, Groups] = {}  # by instance key; read once per replica (thread only)
        self._last: dict[str, tuple[float, float]] = {}  # key -> (wall time, CPU seconds) of the last reading
        self._latest: dict[str, tuple[float | None, int | None]] = {}  # key -> (cpu %, memory bytes)
        self._failed = False

    def figures(self, key: str) -> tuple[float | None, int | None]:
        """The replica's latest CPU percent and memory bytes; (None, None) before its first sample."""
        return self._latest.get(key, (None, None))

    # -- reading (in a worker thread) ------------------------------------------------------------------

    def read(self, targets: list[Target]) -> tuple[float, dict[str, Reading]]:
        """One reading per target, and the wall time it was taken at."""
        if self._mounts is None:
            self._mounts = cgroup_mounts(_read_text(f"{self._proc}/self/mounts"))
        readings: dict[str, Reading] = {}
        table: ProcTable | None = None
        for target in targets:
            groups = self._groups.get(target.key)
            if groups is None:
                text = _read_text(f"{self._proc}/{target.pid}/cgroup")
                if text is None:
                    continue  # gone: its exit is on its way to the supervisor
                groups = self._groups[target.key] = replica_groups(text, self._mounts, target.key)
            reading = read_groups(groups)
            if reading.cpu_seconds is None or reading.memory is None:  # no group for it: its process tree
                table = table or ProcTable(self._proc)
                tree = table.read(target.pid)
                reading = Reading(reading.cpu_seconds if reading.cpu_seconds is not None else tree.cpu_seconds,
                                  reading.memory if reading.memory is not None else tree.memory)
            readings[target.key] = reading
        return time.time(), readings

    # -- figures (on the loop) -------------------------------------------------------------------------

    def record(self, targets: list[Target], now: float, readings: dict[str, Reading]) -> list[UsageSample]:
        samples: list[UsageSample] = []
        for target in targets:
            reading = readings.get(target.key)
            if reading is None:
                continue
            cpu = None
            if reading.cpu_seconds is not None:
                before = self._last.get(target.key, (target.started_at, 0.0))
                cpu = cpu_percent(before, (now, reading.cpu_seconds))
                self._last[target.key] = (now, reading.cpu_seconds)
            self._latest[target.key] = (cpu, reading.memory)
            samples.append({"project": target.project, "service": target.service, "replica": target.replica,
                            "at": now, "cpu": cpu, "memory": reading.memory})
        keep = {target.key for target in targets}
        for table in (self._last, self._latest, self._groups):
            for key in [key for key in table if key not in keep]:
                del table[key]
        return samples

    async def sample(self) -> list[UsageSample]:
        """Read every replica now, keep the figures, and hand the samples to the sink."""
        targets = self._targets()
        if not targets:
            self.record([], time.time(), {})
            return []
        now, readings = await asyncio.to_thread(self.read, targets)
        samples = self.record(targets, now, readings)
        sink = self._sink
        if samples and sink is not None:
            self._store(lambda: sink.add_usage(samples))
        return samples

    def _store(self, action: Callable[[], object]) -> None:
        """A failed write (a full disk) costs samples, said once per episode; never the sampler."""
        try:
            action()
            self._failed = False
        except Exception as exc:
            if not self._failed:
                log.warning("resource samples are not being stored: %s", exc)
            self._failed = True

    def _prune(self) -> None:
        sink = self._sink
        if sink is not None:
            self._store(lambda: sink.prune_usage(time.time() - self.retention))

    async def run(self) -> None:
        """Sample on a fixed schedule until cancelled (the local engine's close)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        count = 0
        while True:
            if count % PRUNE_EVERY == 0:
                self._prune()
            count += 1
            try:
                await self.sample()
            except Exception:  # a bug here must cost one sample, never the daemon's other work
                log.exception("sampling resource use failed")
            due += self.interval
            if due < loop.time():  # a sample took longer than the interval: skip, never catch up in a burst
                due = loop.time() + self.interval
            await asyncio.sleep(due - loop.time())
