"""One cgroup v2 per replica, where the machine lets us: the exact answer to "every process of it".

A process that daemonizes with a clean environment escapes the process group, the session and the
environment marker, but not its cgroup. Where cgroup v2 is not writable, the runner falls back to those
(proctree.py). Standard library only: the runner imports this.
"""

from __future__ import annotations

import os
import signal


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return fields[1]
    except OSError:
        pass
    return None


def _own_path() -> str:
    try:
        with open("/proc/self/cgroup") as groups:
            for line in groups:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return "/"


class Cgroups:
    """Creates `<our cgroup>/stackblaze-<runner pid>/<instance>` groups; disabled when that fails."""

    def __init__(self) -> None:
        self.base: str | None = None
        mount = _cgroup2_mount()
        if mount is None:
            return
        base = os.path.join(mount, _own_path().lstrip("/"), f"stackblaze-{os.getpid()}")
        try:
            os.makedirs(base, exist_ok=True)
            probe = os.path.join(base, "probe")
            os.mkdir(probe)
            # Moving ourselves in and out proves we may write cgroup.procs here (delegation, permissions).
            with open(os.path.join(probe, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
            with open(os.path.join(os.path.dirname(base), "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
            os.rmdir(probe)
        except OSError:
            try:
                os.rmdir(base)
            except OSError:
                pass
            return
        self.base = base
        self._reap_dead_runners(os.path.dirname(base))

    def _reap_dead_runners(self, parent: str) -> None:
        """Groups left by a runner that died: kill what is still in them (a replica's orphans) and remove
        them, so a runner that replaces a dead one leaves nothing of its replicas behind."""
        for name in os.listdir(parent):
            if not name.startswith("stackblaze-") or os.path.join(parent, name) == self.base:
                continue
            try:
                os.kill(int(name.removeprefix("stackblaze-")), 0)
                continue  # that runner is alive (another STACKBLAZE_HOME)
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):
                continue
            stale = os.path.join(parent, name)
            for group in os.listdir(stale):
                path = os.path.join(stale, group)
                if os.path.isdir(path):
                    _kill_group(path)
                    try:
                        os.rmdir(path)
                    except OSError:
                        pass  # the killed processes are not reaped yet; the next runner tries again
            try:
                os.rmdir(stale)
            except OSError:
                pass

    def path(self, key: str) -> str | None:
        if self.base is None:
            return None
        return os.path.join(self.base, key.replace("/", "_"))

    def create(self, key: str) -> str | None:
        path = self.path(key)
        if path is None:
            return None
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            return None
        return path

    def kill(self, key: str) -> bool:
        """SIGKILL everything in the instance's cgroup; False when there is no cgroup to use."""
        path = self.path(key)
        if path is None or not os.path.isdir(path):
            return False
        _kill_group(path)
        return True

    def remove(self, key: str) -> None:
        path = self.path(key)
        if path is not None:
            try:
                os.rmdir(path)
            except OSError:
                pass  # still populated (a process is being killed) or already gone

    def close(self) -> None:
        if self.base is None:
            return
        for name in os.listdir(self.base):
            try:
                os.rmdir(os.path.join(self.base, name))
            except OSError:
                pass
        try:
            os.rmdir(self.base)
        except OSError:
            pass


def _kill_group(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as kill:
            kill.write("1")
        return
    except OSError:
        pass
    try:  # kernels before 5.14 have no cgroup.kill
        with open(os.path.join(path, "cgroup.procs")) as procs:
            pids = [int(line) for line in procs if line.strip()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def join(path: str) -> None:
    """In the child, before exec: move this process into the cgroup so every descendant is born in it."""
    with open(os.path.join(path, "cgroup.procs"), "w") as procs:
        procs.write("0")
