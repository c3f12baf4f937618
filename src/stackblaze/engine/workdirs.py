"""A replica's working directory: its own copy of the release tree, made at each start and removed when it
ends, so that what a worker writes where it runs never reaches the release other replicas, restarts and
rollbacks start from (Heroku's ephemeral filesystem: each dyno gets a fresh copy of its slug).

Why a copy rather than a read-only release: workers do write next to their code (a pid file, a cache,
sqlite, `out.txt`), and on Heroku, Render and Dokku that works. A hardlink farm would share inodes, so an
in-place edit would still change the release; an overlay mount needs root and a mount namespace per
replica. `cp --reflink=auto` shares blocks on filesystems that can (btrfs, XFS) and copies elsewhere;
dependency layers (venv, node_modules, gems) are symlinks in the tree and are not copied.

Layout: releases/<project>/_replicas/<instance key>/ is a copy of releases/<project>/builds/<build id>/.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
WORK = "_replicas"  # no service can be named so (names start with a letter): it never meets a build log folder
COMPLETE = ".complete"  # what the builder writes last into a finished tree (build/builder.py)


def tree_of(cwd: Path) -> tuple[Path, Path] | None:
    """The finished build tree holding `cwd` (a monorepo service runs in a folder of it) and `cwd`'s path
    inside it; None when `cwd` is not in one (a release made by hand: it runs where it is)."""
    for candidate in (cwd, *cwd.parents):
        if candidate.parent.name == "builds" and (candidate / COMPLETE).is_file():
            return candidate, cwd.relative_to(candidate)
    return None


class Workdirs:
    """Copies under `releases_dir` (the home's releases/)."""

    def __init__(self, releases_dir: Path) -> None:
        self._releases_dir = releases_dir

    def folder(self, project: str, key: str) -> Path:
        return self._releases_dir / project / WORK / key

    def prepare(self, *, project: str, key: str, cwd: str, user: Mapping[str, Any] | None = None) -> str:
        """A fresh copy of the tree holding `cwd` for instance `key`, owned by `user` (the runner's spawn
        fields: uid, gid) when given; returns the copy's `cwd`. Raises OSError when it cannot be made."""
        found = tree_of(Path(cwd))
        if found is None:
            return cwd
        tree, inside = found
        target = self.folder(project, key)
        work = target.parent
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o711)  # each worker user enters its own copy (0700 below), lists none
        shutil.rmtree(target, ignore_errors=True)
        done = subprocess.run(["cp", "-a", "--reflink=auto", "--", str(tree), str(target)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            full = "No space left" in done.stderr or "Disk quota exceeded" in done.stderr
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          f"cannot copy release {tree.name} into {target}: {done.stderr.strip()}")
        (target / COMPLETE).unlink(missing_ok=True)
        if user is not None:
            _chown_tree(target, int(user["uid"]), int(user["gid"]))
        os.chmod(target, 0o700)
        return str(target / inside)

    def discard(self, project: str, key: str) -> None:
        shutil.rmtree(self.folder(project, key), ignore_errors=True)

    def sweep(self, keep: Collection[str]) -> None:
        """Remove every copy whose instance is not in `keep` (the runner's table): ended while the daemon
        was down."""
        for work in self._releases_dir.glob(f"*/{WORK}"):
            for copy in work.iterdir():
                if copy.name not in keep:
                    log.info("removing the working directory of ended instance %s", copy.name)
                    shutil.rmtree(copy, ignore_errors=True)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """The worker owns its copy (a symlink itself, never what it points to: the shared dependency layer)."""
    for root, dirs, files in os.walk(top):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
