"""What a spawn request carries of a replica's own view of the machine, for a worker's replica and a cron
run alike: who it runs as, the project's hosts file over /etc/hosts, its disk bind-mounted at mount_path
(the runner's child applies them: engine/local/mountns.py), and the disk's real path in its env."""

from __future__ import annotations

from typing import Any

from stackblaze.engine.protocol import Desired


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
