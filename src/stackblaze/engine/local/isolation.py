"""What a spawn request carries of a replica's own view of the machine, for a worker's replica and a cron
run alike: who it runs as, the project's hosts file over /etc/hosts, its disk bind-mounted at mount_path
(the runner's child applies them: engine/local/mountns.py), the platform's variables in its env, and the
working directory it starts in (its own copy of the release)."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

from stackblaze.engine.protocol import Desired
from stackblaze.engine.workdirs import Workdirs

log = logging.getLogger(__name__)


def spawn_fields(desired: Desired) -> dict[str, Any]:
    """The runner's `user`, `hosts` and `binds` fields of a spawn (binds: [{"source", "target"}])."""
    binds = []
    if desired.disk is not None and desired.disk.get("path"):
        binds.append({"source": desired.disk["path"], "target": desired.disk["mount_path"]})
    return {"user": desired.user, "hosts": desired.hosts, "binds": binds}


def disk_env(desired: Desired) -> dict[str, str]:
    """STACKBLAZE_DISK_PATH: the disk's directory itself, which works where the bind mount could not be made
    (a non-root daemon whose replicas cannot create mount_path)."""
    if desired.disk is None or not desired.disk.get("path"):
        return {}
    return {"STACKBLAZE_DISK_PATH": str(desired.disk["path"])}


def spawn_env(desired: Desired, extra: dict[str, str]) -> dict[str, str]:
    """The service's env, then what the platform tells every process of it (`extra`: a replica's number, a
    cron run's number and attempt), then the disk's path; the platform's names win over the spec's."""
    env = dict(desired.env)
    env.update({
        "STACKBLAZE_SERVICE": desired.service, "STACKBLAZE_RELEASE": str(desired.release),
        "STACKBLAZE_SHUTDOWN_GRACE_SECONDS": f"{desired.shutdown_grace:g}",
    })
    env.update(extra)
    env.update(disk_env(desired))
    return env


async def working_dir(workdirs: Workdirs | None, *, project: str, key: str, desired: Desired) -> str:
    """Instance `key`'s own copy of its release (engine/workdirs.py; None: it runs in the release itself, as
    with unit tests' fakes). Any OSError but a full disk is the caller's to report as a start that failed."""
    if workdirs is None:
        return desired.cwd
    try:
        return await asyncio.to_thread(workdirs.prepare, project=project, key=key, cwd=desired.cwd,
                                       user=desired.user)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk must not stop restarts (a crash loop goes on, as the runner's logs do) nor cron runs:
        # this start runs in the shared release itself, as before per-instance copies, and says so.
        log.warning("%s/%s: no room for a working copy (%s): runs in the release itself", project, key,
                    exc.strerror)
        return desired.cwd
