"""The modes of STACKBLAZE_HOME: everything is the daemon's alone (0700 directories, 0600 files), except
what workers running as another user must read: release trees and dependency layers, through the worker
group (read and traverse, never write).

    home/                 0700, or 0710 group stackblaze-worker when the daemon is root
      state.db* secret.key daemon.log runner.log daemon.out   0600
      api.sock run/ logs/                                      0600 / 0700 (logs: files 0600)
      releases/ cache/ cache/deps/ releases/P/ releases/P/builds/   0700, or 0710 group worker
      releases/P/builds/ID/  cache/deps/KEY/   (shared trees)  group worker, g=r-x of the owner's bits, o=---
      releases/P/SERVICE/ (build logs), cache/*.key             0700 / 0600
      run/disk-reserve   0600: space held back for a full disk (see keep_reserve)
      disks/ disks/P/    0700, or 0710 group worker; disks/P/S/ (a backing service's data): its server's user, 0700
      disks/P/D/         a worker's or cron service's disk D (server/disks.py): its workers' user, 0700
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from stackblaze.settings import Settings

log = logging.getLogger("stackblaze.home")
SHARED_TOP = ("releases", "cache", "disks")  # where workers may traverse (only with the worker group)
RESERVE = 4 << 20  # ample for the journal pages of deleting a project with 24 MiB of events


def secure_home(settings: Settings, *, worker_gid: int | None = None) -> None:
    """Create the home private, and tighten what an older version (or a umask) left looser: the home,
    its files and the whole of logs/ and run/. With `worker_gid`, the home and the shared tops become
    traversable (not listable) by that group."""
    home = settings.home
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _set(home, 0o710 if worker_gid is not None else 0o700, worker_gid)
    for entry in home.iterdir():
        if entry.is_symlink():
            continue
        if entry.name in SHARED_TOP and entry.is_dir():
            _set(entry, 0o710 if worker_gid is not None else 0o700, worker_gid)
        elif entry.is_dir():
            _set(entry, 0o700)
            if entry.name in ("logs", "run"):
                _tighten_tree(entry)
        else:
            _set(entry, 0o600)
    for path in (settings.cache_dir / "deps",):
        if path.is_dir():
            _set(path, 0o710 if worker_gid is not None else 0o700, worker_gid)
    for entry in settings.cache_dir.glob("*"):
        if entry.is_file() and not entry.is_symlink():
            _set(entry, 0o600)  # the build cache's digest key and locks
    for folder in settings.releases_dir.glob("*/*"):  # a service's build logs; builds/ is shared per tree
        # builds/ is shared per tree; _replicas/ holds each replica's own copy, owned by its worker user
        if folder.name not in ("builds", "_replicas") and folder.is_dir() and not folder.is_symlink():
            _set(folder, 0o700)
            _tighten_tree(folder)


def share_tree(tree: Path, *, top: Path, gid: int) -> bool:
    """Let group `gid` read `tree` (a release's build tree or a dependency layer) and traverse the
    directories from `top` (the home) down to it. Idempotent; False when the tree is not there."""
    if not tree.is_dir():
        return False
    open_gates(tree, top=top, gid=gid)
    for root, dirs, files in os.walk(tree):
        _share(Path(root), gid)
        for name in dirs + files:
            _share(Path(root) / name, gid)
    return True


def open_gates(path: Path, *, top: Path, gid: int) -> None:
    """Let group `gid` traverse (not list) the directories from `top` (the home) down to `path`'s parent."""
    with contextlib.suppress(ValueError):  # a path outside the home has no gate of ours to open
        _set(top, 0o710, gid)
        for parent in reversed(path.relative_to(top).parents):
            if parent != Path("."):
                _set(top / parent, 0o710, gid)


def keep_reserve(settings: Settings) -> bool:
    """Hold RESERVE bytes of the home's filesystem in run/disk-reserve while there is room, for the day
    it is full: giving them back lets the daemon start, and `destroy` delete, on a full disk."""
    path = settings.run_dir / "disk-reserve"
    try:
        if path.exists() and path.stat().st_size >= RESERVE:
            return True
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE)
        finally:
            os.close(fd)
        return True
    except OSError:  # no room (or no fallocate): nothing held, nothing to give back later
        with contextlib.suppress(OSError):
            path.unlink()
        return False


def release_reserve(settings: Settings) -> bool:
    """Give the reserve back to the filesystem; False when none was held."""
    try:
        (settings.run_dir / "disk-reserve").unlink()
    except FileNotFoundError:
        return False
    log.warning("the disk under %s is full: gave back the %d MiB reserve", settings.home, RESERVE >> 20)
    return True


def unreachable_by(path: Path, *, uid: int, groups: set[int]) -> Path | None:
    """The first directory above `path` that a process of `uid` and `groups` may not traverse (None: it
    reaches `path`). A root daemon's home under a 0700 /root is the usual one."""
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_uid == uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid in groups:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return parent
    return None


def _share(path: Path, gid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return
        owner = (info.st_mode >> 6) & 0o5  # the owner's read and execute bits, never write
        mode = (info.st_mode & 0o700) | (owner << 3)
        if info.st_gid != gid:
            os.chown(path, -1, gid)
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)


def _tighten_tree(top: Path) -> None:
    for root, dirs, files in os.walk(top):
        for name in dirs:
            _set(Path(root) / name, 0o700)
        for name in files:
            _set(Path(root) / name, 0o600)


def _set(path: Path, mode: int, gid: int | None = None) -> None:
    """chmod (and chgrp) only when different: a home on a full disk still starts (no write needed)."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            return
        if gid is not None and info.st_gid != gid:
            os.chown(path, -1, gid)
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError as exc:  # not ours (e.g. a file another user put there): say so, go on
        log.warning("cannot set the mode of %s: %s", path, exc)
