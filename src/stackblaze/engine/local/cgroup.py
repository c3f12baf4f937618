"""One cgroup per replica, where the machine lets us: the exact answer to "every process of it", and the
kernel's word on whether it ran out of memory.

A process that daemonizes with a clean environment escapes the process group, the session and the
environment marker, but not its cgroup v2. Where cgroup v2 is not writable, the runner falls back to those
(proctree.py). Out-of-memory kills are counted by `memory.events` (`oom_kill`) in the replica's v2 group
when the memory controller is delegated there, else by `memory.oom_control` in a v1 memory group (hybrid
hierarchies, as on this kind of container host). Standard library only: the runner imports this.
"""

from __future__ import annotations

import os
import signal
import zlib


def _mounts() -> list[list[str]]:
    try:
        with open("/proc/self/mounts") as mounts:
            return [line.split() for line in mounts]
    except OSError:
        return []


def _own_path(hierarchy: str) -> str:
    """Our cgroup in the v2 hierarchy (hierarchy "") or in the v1 hierarchy with that controller."""
    try:
        with open("/proc/self/cgroup") as groups:
            for line in groups:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if (hierarchy == "" and controllers == "") or hierarchy in controllers.split(","):
                    return path
    except (OSError, ValueError):
        pass
    return "/"


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _read_key(path: str, key: str) -> int | None:
    """The value of `key` in a flat keyed file (memory.events, memory.oom_control); None if unreadable."""
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return None


class _Tree:
    """`<our cgroup>/stackblaze-<home>-<runner pid>/<instance>` groups in one hierarchy."""

    def __init__(self, root: str, prefix: str) -> None:
        self.parent = root
        self.prefix = prefix
        self.base = os.path.join(root, f"{prefix}{os.getpid()}")

    def probe(self) -> bool:
        """Make our base group and prove we may move a process into a group below it (delegation,
        permissions): move ourselves in and back out."""
        try:
            os.makedirs(self.base, exist_ok=True)
            probe = os.path.join(self.base, "probe")
            os.makedirs(probe, exist_ok=True)
            _write(os.path.join(probe, "cgroup.procs"), str(os.getpid()))
            _write(os.path.join(self.parent, "cgroup.procs"), str(os.getpid()))
            os.rmdir(probe)
            return True
        except OSError:
            _rmdir(os.path.join(self.base, "probe"))
            _rmdir(self.base)
            return False

    def stale(self) -> tuple[list[str], list[str]]:
        """Base groups of this home's runners other than us (with the runner lock held: dead ones'), and
        those of other homes' runners that are dead (ephemeral homes never start a runner again)."""
        ours, others = [], []
        for name in _listdir(self.parent):
            path = os.path.join(self.parent, name)
            if not name.startswith("stackblaze-") or path == self.base:
                continue
            if name.startswith(self.prefix):
                ours.append(path)
            elif not _alive(name.rpartition("-")[2]):
                others.append(path)
        return ours, others

    def group(self, key: str) -> str:
        return os.path.join(self.base, key.replace("/", "_"))

    def close(self) -> None:
        for name in _listdir(self.base):
            _rmdir(os.path.join(self.base, name))
        _rmdir(self.base)


class Cgroups:
    """Per-replica groups for one runner; each part is off where the machine does not allow it."""

    def __init__(self, home: str) -> None:
        prefix = f"stackblaze-{zlib.crc32(home.encode()):08x}-"
        self.v2: _Tree | None = None
        self.memory_v2 = False  # memory.events in each replica's v2 group
        self.v1_memory: _Tree | None = None  # else memory.oom_control in a v1 memory group
        for fields in _mounts():
            if len(fields) < 4:
                continue
            if fields[2] == "cgroup2" and self.v2 is None:
                tree = _Tree(os.path.join(fields[1], _own_path("").lstrip("/")), prefix)
                if tree.probe():
                    self.v2 = tree
            elif fields[2] == "cgroup" and "memory" in fields[3].split(",") and self.v1_memory is None:
                tree = _Tree(os.path.join(fields[1], _own_path("memory").lstrip("/")), prefix)
                if tree.probe():
                    self.v1_memory = tree
        if self.v2 is not None:
            try:  # delegate the memory controller to the replica groups, if our parent has it to give
                _write(os.path.join(self.v2.base, "cgroup.subtree_control"), "+memory")
                self.memory_v2 = True
            except OSError:
                pass
        if self.memory_v2 and self.v1_memory is not None:
            self.v1_memory.close()  # one source of out-of-memory counts is enough
            self.v1_memory = None

    @property
    def enabled(self) -> bool:
        return self.v2 is not None

    @property
    def oom_accounting(self) -> bool:
        return self.memory_v2 or self.v1_memory is not None

    def reap_stale(self) -> int:
        """Groups left by a dead runner of this home: kill what is still in them (a replica's orphans)
        and remove them. Returns how many groups held processes. A dead runner of another home only
        loses its empty groups: what it left running is for that home's next runner to judge."""
        held = 0
        for tree in (self.v2, self.v1_memory):
            if tree is None:
                continue
            ours, others = tree.stale()
            for stale in ours:
                for name in _listdir(stale):
                    path = os.path.join(stale, name)
                    if os.path.isdir(path):
                        held += _kill_group(path, v2=tree is self.v2) or 0
                        _rmdir(path)  # fails while the killed are not yet reaped; the next runner tries again
                _rmdir(stale)
            for stale in others:
                for name in _listdir(stale):
                    _rmdir(os.path.join(stale, name))  # only an empty group can be removed
                _rmdir(stale)
        return held

    def create(self, key: str) -> list[str]:
        """The groups the replica's first process joins before exec (none where cgroups are off)."""
        paths = []
        for tree in (self.v2, self.v1_memory):
            if tree is not None:
                path = tree.group(key)
                try:
                    os.makedirs(path, exist_ok=True)
                    paths.append(path)
                except OSError:
                    pass
        return paths

    def oom_kills(self, key: str) -> int | None:
        """How many processes of the replica the kernel's OOM killer killed; None: not known here."""
        if self.memory_v2 and self.v2 is not None:
            return _read_key(os.path.join(self.v2.group(key), "memory.events"), "oom_kill")
        if self.v1_memory is not None:
            return _read_key(os.path.join(self.v1_memory.group(key), "memory.oom_control"), "oom_kill")
        return None

    def kill(self, key: str) -> bool:
        """SIGKILL everything in the instance's groups; True when a v2 group held all of it (then nothing
        of the replica can be elsewhere)."""
        exact = False
        for tree in (self.v2, self.v1_memory):
            if tree is not None and os.path.isdir(tree.group(key)):
                done = _kill_group(tree.group(key), v2=tree is self.v2) is not None
                exact = exact or (done and tree is self.v2)
        return exact

    def remove(self, key: str) -> None:
        for tree in (self.v2, self.v1_memory):
            if tree is not None:
                _rmdir(tree.group(key))  # fails while a killed process is not reaped yet, or if gone

    def close(self) -> None:
        for tree in (self.v2, self.v1_memory):
            if tree is not None:
                tree.close()


def _alive(pid: str) -> bool:
    """Whether process `pid` exists (True when unsure: then its groups are left alone)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        pass
    return True


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _kill_group(path: str, *, v2: bool) -> int | None:
    """SIGKILL every process of the group; 1 if it held any, 0 if empty, None if it could not be read."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as procs:
            pids = [int(line) for line in procs if line.strip()]
    except (OSError, ValueError):
        return None
    if not pids:
        return 0
    if v2:
        try:
            _write(os.path.join(path, "cgroup.kill"), "1")
            return 1
        except OSError:
            pass  # kernels before 5.14 have no cgroup.kill
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 1


def join(paths: list[str]) -> None:
    """In the child, before exec: move this process into its groups so every descendant is born there."""
    for path in paths:
        _write(os.path.join(path, "cgroup.procs"), "0")
