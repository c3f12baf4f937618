"""What one replica uses right now: its CPU time so far and its memory, read from the kernel's files.

From the replica's own cgroups where it has them (the runner makes a v2 group and, for out-of-memory
accounting, a v1 memory group per replica; cgroup.py): v2 `cpu.stat` (`usage_usec`), v2 `memory.current`
where the memory controller is delegated, v1 `memory.usage_in_bytes`, v1 `cpuacct.usage`. A group counts
every process of the replica, daemonized grandchildren included, and the kernel keeps the CPU time of the
ones that exited. Where there is no group, from /proc: `utime + stime + cutime + cstime` (/proc/<pid>/stat)
and `VmRSS` (/proc/<pid>/status) summed over the replica's process tree (its process group, which the
runner made it lead, and the descendants of its main process). That misses what left both, and the CPU
time of children that exited unreaped by the replica: the figures are a floor, never made up.

Each reader takes the root it reads under (`proc`, the mount table), so that tests read real files
written to a temporary directory in this machine's formats.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Reading:
    """A replica's cumulative CPU seconds and its memory in bytes; None where nothing could be read."""

    cpu_seconds: float | None
    memory: int | None


@dataclass(frozen=True)
class Groups:
    """The directories of a replica's own cgroups (None: it has none of that kind)."""

    v2: str | None = None
    memory: str | None = None  # v1 memory controller
    cpuacct: str | None = None  # v1 cpuacct controller


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def keyed(text: str | None, key: str) -> int | None:
    """The value of `key` in a flat keyed file (`usage_usec 1019038` lines); None if absent or unparsable."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def single(text: str | None) -> int | None:
    """The one number of a file such as memory.current or cpuacct.usage."""
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def cgroup_mounts(mounts: str | None) -> dict[str, str]:
    """Where each hierarchy is mounted, from /proc/self/mounts: "" for cgroup v2, else a v1 controller."""
    found: dict[str, str] = {}
    for line in (mounts or "").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2":
            found.setdefault("", fields[1])
        elif fields[2] == "cgroup":
            for option in fields[3].split(","):
                if option in ("memory", "cpuacct"):
                    found.setdefault(option, fields[1])
    return found


def replica_groups(cgroup_file: str | None, mounts: dict[str, str], key: str) -> Groups:
    """The replica's own groups, from its main process's /proc/<pid>/cgroup: only a group named after the
    replica instance `key` (the runner's layout, cgroup.py) is its own; any other is shared with the daemon,
    the runner or the host and says nothing of the replica."""
    own = key.replace("/", "_")
    paths: dict[str, str] = {}
    for line in (cgroup_file or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or os.path.basename(parts[2]) != own:
            continue
        for controller in [""] if parts[1] == "" else parts[1].split(","):
            mount = mounts.get(controller)
            if mount is not None:
                paths[controller] = os.path.join(mount, parts[2].lstrip("/"))
    return Groups(v2=paths.get(""), memory=paths.get("memory"), cpuacct=paths.get("cpuacct"))


def read_groups(groups: Groups) -> Reading:
    """CPU seconds and memory bytes from the replica's groups (either None where no group tells it)."""
    cpu: float | None = None
    memory: int | None = None
    if groups.v2 is not None:
        usec = keyed(_read(os.path.join(groups.v2, "cpu.stat")), "usage_usec")
        cpu = usec / 1e6 if usec is not None else None
        memory = single(_read(os.path.join(groups.v2, "memory.current")))  # only with the controller delegated
    if cpu is None and groups.cpuacct is not None:
        nsec = single(_read(os.path.join(groups.cpuacct, "cpuacct.usage")))
        cpu = nsec / 1e9 if nsec is not None else None
    if memory is None and groups.memory is not None:
        memory = single(_read(os.path.join(groups.memory, "memory.usage_in_bytes")))
    return Reading(cpu, memory)


@dataclass(frozen=True)
class ProcEntry:
    ppid: int
    pgid: int
    cpu_ticks: int  # utime + stime + cutime + cstime


def parse_stat(text: str | None) -> ProcEntry | None:
    """/proc/<pid>/stat: the fields after the command name (which may hold spaces and parentheses)."""
    if not text:
        return None
    fields = text.rpartition(")")[2].split()
    if len(fields) < 15 or fields[0] in ("Z", "X"):  # a zombie's time is its parent's to collect
        return None
    try:
        return ProcEntry(ppid=int(fields[1]), pgid=int(fields[2]),
                         cpu_ticks=sum(int(value) for value in fields[11:15]))
    except ValueError:
        return None


def parse_rss(text: str | None) -> int | None:
    """VmRSS of /proc/<pid>/status, in bytes (kernel threads have none)."""
    for line in (text or "").splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
            except (IndexError, ValueError):
                return None
    return None


class ProcTable:
    """One pass over /proc: every live process's parent, group and CPU ticks."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self.entries: dict[int, ProcEntry] = {}
        try:
            names = os.listdir(root)
        except OSError:
            names = []
        for name in names:
            if name.isdigit():
                entry = parse_stat(_read(os.path.join(root, name, "stat")))
                if entry is not None:
                    self.entries[int(name)] = entry

    def tree(self, main_pid: int) -> set[int]:
        """The replica's processes: its group (the runner made the main process its leader) and every
        descendant of the main process (one that started its own group or session too)."""
        found = {pid for pid, entry in self.entries.items() if entry.pgid == main_pid}
        if main_pid in self.entries:
            found.add(main_pid)
        frontier = set(found)
        while frontier:
            frontier = {pid for pid, entry in self.entries.items() if entry.ppid in frontier and pid not in found}
            found |= frontier
        return found

    def read(self, main_pid: int) -> Reading:
        members = self.tree(main_pid)
        if not members:
            return Reading(None, None)
        ticks = sum(self.entries[pid].cpu_ticks for pid in members)
        sizes = [parse_rss(_read(os.path.join(self.root, str(pid), "status"))) for pid in members]
        known = [size for size in sizes if size is not None]
        return Reading(ticks / CLOCK_TICKS, sum(known) if known else None)


def cpu_percent(before: tuple[float, float] | None, now: tuple[float, float]) -> float | None:
    """Percent of one core over the interval between two (wall seconds, CPU seconds) readings. A drop (a
    process whose time the tree no longer holds went away) reads as idle, not as negative."""
    if before is None or now[0] <= before[0]:
        return None
    return max(0.0, (now[1] - before[1]) / (now[0] - before[0]) * 100.0)
