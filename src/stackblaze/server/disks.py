"""Workers' and cron services' disks on this machine: the directory `disks/<project>/<name>` each one is,
who owns it, what a Desired carries of it, and how much it holds (`ps`).

The directory is made when a Desired is first asked for (the deploy's reconcile), owned by whoever the
replicas run as, 0700, and never touched again by deploys, restarts or rollbacks: only `destroy --disks`
removes it. A backing service keeps its data beside them under its own name (server/backing.py); the spec
refuses a disk named like one.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackblaze.server.home import open_gates
from stackblaze.server.worker_user import WorkerUser
from stackblaze.settings import Settings

log = logging.getLogger("stackblaze.disks")
USAGE_TTL = 30.0  # seconds (× STACKBLAZE_TIME_SCALE) a disk's measured size is shown before measuring again
INLINE_BUDGET = 0.05  # real seconds a `ps` may spend measuring; a bigger disk is measured in a thread


def disk_dir(settings: Settings, project: str, name: str) -> Path:
    return settings.disks_dir / project / name


def prepare_disk(settings: Settings, project: str, name: str, *, user: WorkerUser | None,
                 gid: int | None) -> Path:
    """The disk's directory, made 0700 for `user` (None: the daemon's own) on first use; when the service's
    user changed since, its files are handed over to the new one. `gid`: the worker group, which must
    traverse the home down to it (STACKBLAZE_DISK_PATH is read by the replica itself)."""
    path = disk_dir(settings, project, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if gid is not None:
        open_gates(path, top=settings.home, gid=gid)
    try:
        path.mkdir(mode=0o700)
        log.info("%s: made disk %s", project, path)
    except FileExistsError:
        pass
    info = path.lstat()
    uid, group = (user.uid, user.gid) if user is not None else (os.geteuid(), os.getegid())
    if (info.st_uid, info.st_gid) != (uid, group):
        log.warning("%s: disk %s changes hands to uid %d", project, path, uid)
        _chown_tree(path, uid, group)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid, follow_symlinks=False)
    for root, dirs, files in os.walk(top):
        for entry in dirs + files:
            os.chown(os.path.join(root, entry), uid, gid, follow_symlinks=False)


def desired_disk(settings: Settings, project: str, spec: Mapping[str, Any], *, user: WorkerUser | None,
                 gid: int | None, remote: bool) -> dict[str, Any] | None:
    """Desired.disk of a stored service: its spec's disk, with the directory it is here (None on a cluster)."""
    disk = spec.get("disk")
    if not disk:
        return None
    path = None
    if not remote:
        try:
            path = str(prepare_disk(settings, project, disk["name"], user=user, gid=gid))
        except OSError as exc:  # a full or read-only home: the replica says its disk is missing, and starts
            log.error("%s: disk %s could not be prepared: %s", project, disk["name"], exc)
            path = str(disk_dir(settings, project, disk["name"]))
    return {"name": disk["name"], "mount_path": disk["mount_path"], "size": disk["size"], "path": path}


def measure(path: Path, *, deadline: float | None = None) -> int | None:
    """Bytes `path` takes on its filesystem, as `du -s` counts them (allocated blocks, hard links once,
    symlinks not followed); None when `deadline` (time.monotonic) passed first."""
    total, seen, count = 0, set(), 0
    stack = [str(path)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
            total += os.lstat(folder).st_blocks * 512
        except OSError:  # removed meanwhile, or unreadable: counts as nothing
            continue
        for entry in entries:
            count += 1
            if deadline is not None and count % 256 == 0 and time.monotonic() > deadline:
                return None
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
                continue
            if info.st_nlink > 1:
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


class DiskUsage:
    """Used bytes per disk for `ps`, measured at most every USAGE_TTL: a small disk inline, within
    INLINE_BUDGET; a bigger one in a thread, while `ps` shows the last figure (or none yet)."""

    def __init__(self, settings: Settings, *, budget: float = INLINE_BUDGET) -> None:
        self._ttl = settings.scaled(USAGE_TTL)
        self._budget = budget
        self._known: dict[str, tuple[float, int]] = {}  # path -> (when measured, bytes)
        self._measuring: set[str] = set()
        self._lock = threading.Lock()

    def used(self, path: Path) -> tuple[int | None, float | None]:
        """(bytes, when measured as Unix time); (None, None) while a big disk's first measure runs."""
        key = str(path)
        with self._lock:
            known = self._known.get(key)
            busy = key in self._measuring
        if known is not None and (busy or time.time() - known[0] < self._ttl):
            return known[1], known[0]
        if not busy:
            found = measure(path, deadline=time.monotonic() + self._budget)
            if found is not None:
                now = time.time()
                with self._lock:
                    self._known[key] = (now, found)
                return found, now
            with self._lock:
                self._measuring.add(key)
            threading.Thread(target=self._measure, args=(key,), name="disk-usage", daemon=True).start()
        return (known[1], known[0]) if known is not None else (None, None)

    def _measure(self, key: str) -> None:
        try:
            found = measure(Path(key))
            with self._lock:
                if found is not None:
                    self._known[key] = (time.time(), found)
        finally:
            with self._lock:
                self._measuring.discard(key)

    def forget(self, project_dir: Path) -> None:
        with self._lock:
            for key in [k for k in self._known if Path(k).is_relative_to(project_dir)]:
                del self._known[key]


def disk_view(usage: DiskUsage, settings: Settings, project: str, spec: Mapping[str, Any], *,
              local: bool) -> dict[str, Any] | None:
    """What `ps` shows of a service's disk: its spec, where it is and how much it holds (locally; a cluster's
    volume is not measured). `size` is reported, not enforced."""
    disk = spec.get("disk")
    if not disk:
        return None
    view: dict[str, Any] = {**disk, "path": None, "used_bytes": None, "measured_at": None, "enforced": False}
    if local:
        path = disk_dir(settings, project, disk["name"])
        view["path"] = str(path)
        if path.is_dir():
            view["used_bytes"], view["measured_at"] = usage.used(path)
    return view
