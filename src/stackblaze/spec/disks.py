"""Disks: storage of a worker or cron service that outlives restarts, redeploys and rollbacks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from stackblaze.spec.messages import fail, show

_QUANTITY = re.compile(r"[1-9][0-9]{0,5}(Mi|Gi|Ti)")
_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?")
# Mounting over these would hide what the worker itself needs to run (or the kernel's views).
_SYSTEM = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr",
           "/var/run")


@dataclass(frozen=True, kw_only=True)
class Disk:
    name: str
    mount_path: str
    size: str = "1Gi"  # a PersistentVolumeClaim's request; locally reported, not enforced

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "mount_path": self.mount_path, "size": self.size}


def check_size(value: object, *, where: str) -> str:
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return value
    raise fail(where, f"{show(value)} is not a disk size: a whole number of Mi, Gi or Ti (e.g. size: 10Gi)")


def read_disk(raw: object, *, at: Callable[[str], str], service: str) -> Disk:
    """`disk: {name, mount_path, size}`; `at(field)` gives the `file:line: path` prefix of a field."""
    if not isinstance(raw, dict):
        raise fail(at(""), f"{show(raw)} is not a mapping "
                           "(e.g. disk: {name: data, mount_path: /var/data, size: 1Gi})")
    for key in raw:
        if key not in ("name", "mount_path", "size"):
            raise fail(at(str(key)), "unknown field (known fields: name, mount_path, size)")
    name = raw.get("name", service)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail(at("name"), f"{show(name)} is not a valid disk name: 1-40 lowercase letters, digits and '-', "
                               "starting with a letter (e.g. name: data)")
    if "mount_path" not in raw:
        raise fail(at("mount_path"), "missing (e.g. mount_path: /var/data)")
    mount = raw["mount_path"]
    if not isinstance(mount, str) or not mount.startswith("/") or "\0" in mount or ".." in mount.split("/"):
        raise fail(at("mount_path"), f"{show(mount)} is not an absolute path without '..' "
                                     "(e.g. mount_path: /var/data)")
    clean = str(PurePosixPath(mount))
    if clean in _SYSTEM or any(clean.startswith(p + "/") for p in ("/proc", "/sys", "/dev")):
        raise fail(at("mount_path"), f"{show(mount)} would hide a system directory: mount the disk elsewhere "
                                     "(e.g. mount_path: /var/data)")
    return Disk(name=name, mount_path=clean, size=check_size(raw.get("size", "1Gi"), where=at("size")))
