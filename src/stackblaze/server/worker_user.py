"""Who workers run as. When the daemon runs as root they never do: they run as a service's `user:`, else
as STACKBLAZE_WORKER_USER (default `stackblaze-worker`, a system user created on first use). Every worker
user also gets the worker group, the only group that may read release trees and dependency layers.

The runner receives the answer in its spawn request as {"uid", "gid", "groups", "name"} and switches to it
in the child (setgroups, setgid, setuid, then no_new_privs) before exec.
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
from dataclasses import dataclass
from typing import Any

from stackblaze.errors import UserError

log = logging.getLogger("stackblaze.workers")
DEFAULT_USER = "stackblaze-worker"
ROOT_NAMES = frozenset({"root"})
USERADD = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
           "--shell", "/usr/sbin/nologin"]


@dataclass(frozen=True)
class WorkerUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str

    def spawn_fields(self) -> dict[str, Any]:
        """The runner's contract."""
        return {"uid": self.uid, "gid": self.gid, "groups": list(self.groups), "name": self.name}


class WorkerUsers:
    def __init__(self, *, default: str | None = None, euid: int | None = None) -> None:
        self.default = default or os.environ.get("STACKBLAZE_WORKER_USER") or DEFAULT_USER
        self.as_root = (os.geteuid() if euid is None else euid) == 0
        self._group: int | None = None

    @property
    def switching(self) -> bool:
        """Whether workers run as another user than the daemon's at all."""
        return self.as_root and self.default not in ROOT_NAMES

    def worker_gid(self) -> int | None:
        """The worker group (the default user's own group), creating that user on first use; None when
        workers run as the daemon's own user."""
        if not self.as_root:
            return None
        if self._group is None:
            entry = self._lookup(DEFAULT_USER) or self._create(DEFAULT_USER)
            self._group = entry.pw_gid
        return self._group

    def home_gid(self) -> int | None:
        """The group the home opens to at daemon start: the worker group when workers switch users or the
        worker user exists (a `user:` may have needed it), else None (the home stays 0700)."""
        if not self.as_root:
            return None
        if self.switching:
            return self.worker_gid()
        entry = self._lookup(DEFAULT_USER)
        return entry.pw_gid if entry is not None else None

    def check(self, name: str | None, *, where: str) -> str | None:
        """At deploy: a `user:` that does not exist is an error; a note when it is ignored (the daemon is
        not root, so workers run as its own user)."""
        if name is None:
            return None
        if not self.as_root:
            try:
                me = pwd.getpwuid(os.geteuid()).pw_name
            except KeyError:  # a uid with no passwd entry (some containers)
                me = str(os.geteuid())
            return None if name == me else f"{where}: {name!r} ignored: the daemon runs as {me!r}, not root, " \
                                           f"so workers run as {me!r}"
        if self._lookup(name) is None:
            raise UserError(f"{where}: {name!r} does not exist on this machine (create it, e.g. "
                            f"useradd --system {name}, or remove user: to run as {self.default!r})")
        return None

    def resolve(self, name: str | None) -> WorkerUser | None:
        """Who a service's workers run as (None: as the daemon itself). A `user:` that has gone since the
        deploy falls back to the default worker user, never to root."""
        if not self.as_root:
            return None
        chosen = name or self.default
        if chosen in ROOT_NAMES:
            return None
        entry = self._lookup(chosen)
        if entry is None and chosen != DEFAULT_USER:
            log.error("user %r does not exist (any more): its workers run as %r", chosen, DEFAULT_USER)
        if entry is None:
            entry = self._lookup(DEFAULT_USER) or self._create(DEFAULT_USER)
        shared = self.worker_gid()
        groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
        if shared is not None:
            groups.add(shared)
        return WorkerUser(entry.pw_uid, entry.pw_gid, tuple(sorted(groups)), entry.pw_name, entry.pw_dir)

    @staticmethod
    def _lookup(name: str) -> pwd.struct_passwd | None:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    @staticmethod
    def _create(name: str) -> pwd.struct_passwd:
        """A system user with its own group, no home and no login shell; `nobody` when it cannot be made."""
        try:
            done = subprocess.run([*USERADD, name], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            done = None
            log.error("cannot create the worker user %s: %s", name, exc)
        created = WorkerUsers._lookup(name)  # another daemon may have created it meanwhile: fine too
        if created is not None:
            if done is not None and done.returncode == 0:
                log.warning("created the system user %s (uid %d) for workers", name, created.pw_uid)
            return created
        log.error("cannot create the worker user %s (%s): workers run as nobody", name,
                  done.stderr.strip() if done is not None else "no useradd")
        return pwd.getpwnam("nobody")
