"""A replica's own view of /etc/hosts: the child side, between fork and exec (the runner imports this).

The process enters a private mount namespace and bind-mounts its project's hosts file (engine/names.py)
over /etc/hosts, so `<name>.internal` resolves for every resolver that reads the file (glibc, musl, Go's
pure resolver) in this replica and nowhere else; nscd, which would answer from the host's file, is hidden.
As root: unshare(CLONE_NEWNS). As another user: an unprivileged user namespace where we are root for the
mounts, then a second, nested one that maps the real uid back, so the worker sees its own uid and cannot
undo the mount (it has no capability over the namespace that owns it). No fork: the PID stays the one the
runner recorded. A service's disk (server/disks.py) is bind-mounted the same way at its mount_path. Standard
library only.

`python -m stackblaze.engine.local.mountns --probe HOSTS NAME [--userns]` runs the same steps in a fresh
process and prints what NAME resolved to (names.probe uses it at daemon start).
"""

from __future__ import annotations

import ctypes
import errno as errnos
import json
import os
import socket
import sys

TYPE_CHECKING = False  # the runner imports this: no typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
# statvfs flag bits of the source mount that a remount inside a user namespace must keep (the kernel locks
# them: dropping one fails with EPERM); ST_* and MS_* share their values.
LOCKED = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
ETC_HOSTS = "/etc/hosts"
NSCD_DIRS = ("/run/nscd", "/var/run/nscd")
SAY = "stackblaze: <name>.internal names unavailable in this replica: {reason}\n"
SAY_DISK = ("stackblaze: the disk is not mounted at {target} in this replica ({reason}): its files are at "
            "$STACKBLAZE_DISK_PATH\n")


class Unavailable(Exception):
    """A step failed; the message is the reason in plain words."""


def read_sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as file:
            return file.read().strip()
    except OSError:
        return None


def explain(step: str, err: int, *, sysctl: Callable[[str], str | None] = read_sysctl) -> str:
    """Why `step` failed with errno `err`, in words a user can act on (doctor shows it)."""
    code = errnos.errorcode.get(err, str(err))
    userns_limit = sysctl("user.max_user_namespaces")
    if step in ("userns", "uid_map", "gid_map", "setgroups", "mount") or step.startswith("mount "):
        if userns_limit == "0":
            return "unprivileged user namespaces are disabled (user.max_user_namespaces=0)"
        if step == "userns" and err == errnos.ENOSPC:
            return f"the limit of user namespaces is reached (user.max_user_namespaces={userns_limit})"
        if sysctl("kernel.unprivileged_userns_clone") == "0":
            return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)"
        if err in (errnos.EPERM, errnos.EACCES) and sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
            return ("AppArmor restricts unprivileged user namespaces "
                    "(kernel.apparmor_restrict_unprivileged_userns=1)")
        if step == "userns" and err == errnos.EPERM:
            return ("creating a user namespace is not permitted here (EPERM: a container's seccomp profile, "
                    "or a chroot)")
        if step == "userns" and err == errnos.EINVAL:
            return "the kernel has no user namespaces (EINVAL: built without CONFIG_USER_NS?)"
    if step == "mountns" and err == errnos.EPERM:
        return ("creating a mount namespace is not permitted (EPERM: the daemon lacks CAP_SYS_ADMIN, "
                "as in a container without it)")
    words = {"userns": "creating a user namespace", "mountns": "creating a mount namespace",
             "uid_map": "mapping the uid in the user namespace", "gid_map": "mapping the gid in the user namespace",
             "setgroups": "denying setgroups in the user namespace", "bind": "bind-mounting the disk",
             "mount": "mounting the project's hosts file over /etc/hosts"}.get(step, step)
    return f"{words} failed: {os.strerror(err)} ({code})"


class _Steps:
    def __init__(self, libc: Any) -> None:
        self.libc = libc
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.unshare.argtypes = [ctypes.c_int]

    def unshare(self, flags: int, step: str) -> None:
        if self.libc.unshare(flags) != 0:
            raise Unavailable(explain(step, ctypes.get_errno()))

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None,
              step: str = "mount") -> None:
        def b(text: str | None) -> bytes | None:
            return None if text is None else text.encode()

        if self.libc.mount(b(source), b(target), b(fstype), flags, b(data)) != 0:
            raise Unavailable(explain(step, ctypes.get_errno()))

    @staticmethod
    def write(path: str, text: str, step: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise Unavailable(explain(step, exc.errno or errnos.EIO)) from None


def enter(hosts: str, libc: Any = None, *, userns: bool | None = None) -> str:
    """Give this process a mount namespace whose /etc/hosts is `hosts`; the mode used ("mount" or
    "userns"). `userns`: None chooses by the effective uid (a user namespace unless root). Raises
    Unavailable with the reason; a failure part-way leaves the process with the host's /etc/hosts."""
    mode, missed = settle(hosts, (), libc, userns=userns)
    if missed:
        raise missed[0][1]
    assert mode is not None
    return mode


def settle(hosts: str | None, binds: Sequence[Mapping[str, str]], libc: Any = None, *,
           userns: bool | None = None) -> tuple[str | None, list[tuple[str, Unavailable]]]:
    """Enter a mount namespace with `hosts` over /etc/hosts (when given) and each bind's `source` directory
    mounted at its `target`, made (0755, with its missing parents) when absent. Returns the mode (None: no
    namespace was entered) and what could not be done: ("names", why) or (a bind's target, why)."""
    missed: list[tuple[str, Unavailable]] = []
    topics = (["names"] if hosts is not None else []) + [bind["target"] for bind in binds]
    if not topics:
        return None, missed
    if libc is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError as exc:
            return None, [(topic, Unavailable(f"the C library could not be loaded ({exc})")) for topic in topics]
    if hosts is not None and not os.path.isfile(hosts):
        missed.append(("names", Unavailable(f"the project's hosts file {hosts} does not exist")))
        hosts = None
    mounted = []
    for bind in binds:  # on the host, before any namespace: a user namespace's root may not create it either
        try:
            make_mount_point(bind["target"])
            mounted.append(bind)
        except Unavailable as exc:
            missed.append((bind["target"], exc))
    if hosts is None and not mounted:
        return None, missed
    steps = _Steps(libc)
    uid, gid = os.geteuid(), os.getegid()
    if userns is None:
        userns = uid != 0
    every = (["names"] if hosts is not None else []) + [bind["target"] for bind in mounted]
    if not userns:
        try:
            steps.unshare(CLONE_NEWNS, "mountns")
            _mounts(steps, hosts, mounted, missed)
        except Unavailable as exc:
            return None, missed + [(topic, exc) for topic in every]
        return "mount", missed
    try:
        steps.unshare(CLONE_NEWUSER | CLONE_NEWNS, "userns")
    except Unavailable as exc:
        return None, missed + [(topic, exc) for topic in every]
    try:
        # Root in this namespace (only our own uid mapped): allowed to mount in the mount namespace it owns.
        steps.write("/proc/self/setgroups", "deny", "setgroups")
        steps.write("/proc/self/uid_map", f"0 {uid} 1", "uid_map")
        steps.write("/proc/self/gid_map", f"0 {gid} 1", "gid_map")
        _mounts(steps, hosts, mounted, missed)
    except Unavailable as exc:
        missed += [(topic, exc) for topic in every]
    # Even after a failure: the worker must see its real uid, not 0. The nested namespace has no capability
    # over the one owning the mounts, so the worker cannot unmount the file either.
    if os.geteuid() == 0:
        try:
            steps.unshare(CLONE_NEWUSER, "userns")
            steps.write("/proc/self/setgroups", "deny", "setgroups")
            steps.write("/proc/self/uid_map", f"{uid} 0 1", "uid_map")
            steps.write("/proc/self/gid_map", f"{gid} 0 1", "gid_map")
        except Unavailable as exc:
            missed += [(topic, exc) for topic in every if topic not in dict(missed)]
    return "userns", missed


def make_mount_point(target: str) -> None:
    """`target` as an (empty) directory to mount over, made 0755 with its missing parents when absent: the
    worker's user must be able to walk down to it."""
    missing = []
    path = target
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)
            os.chmod(folder, 0o755)  # whatever the umask
        except FileExistsError:
            pass
        except OSError as exc:
            who = "stackblaze could not create it" if os.geteuid() == 0 else \
                "a daemon that is not root may not create it"
            raise Unavailable(f"{target} does not exist and {who}: {os.strerror(exc.errno or errnos.EIO)}; "
                              "create it as root") from None
    if not os.path.isdir(target):
        raise Unavailable(f"{target} exists and is not a directory")


def _mounts(steps: _Steps, hosts: str | None, binds: Sequence[Mapping[str, str]],
            missed: list[tuple[str, Unavailable]]) -> None:
    # Slave first, never skipped: on a shared root (systemd's default) the binds below would otherwise appear
    # on the host. Slave, not private, so that host mounts made later still reach the replica.
    steps.mount(None, "/", None, MS_REC | MS_SLAVE, None)
    if hosts is not None:
        try:
            _hosts_mounts(steps, hosts)
        except Unavailable as exc:
            missed.append(("names", exc))
    for bind in binds:
        try:
            steps.mount(bind["source"], bind["target"], None, MS_BIND | MS_REC, None, step="bind")
        except Unavailable as exc:
            missed.append((bind["target"], exc))


def _hosts_mounts(steps: _Steps, hosts: str) -> None:
    steps.mount(hosts, ETC_HOSTS, None, MS_BIND, None)
    try:  # read-only is a second fence (the file is the daemon's and 0644 anyway): not worth failing for
        locked = os.statvfs(hosts).f_flag & LOCKED
        steps.mount(None, ETC_HOSTS, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked, None)
    except (Unavailable, OSError):
        pass
    seen: set[str] = set()
    for folder in NSCD_DIRS:
        # nscd would answer from the host's /etc/hosts through its socket; an empty directory hides it.
        real = os.path.realpath(folder)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        steps.mount("tmpfs", real, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755",
                    step=f"mount over {real} (to hide nscd)")


def enter_or_say(hosts: str | None, libc: Any = None, binds: Sequence[Mapping[str, str]] = ()) -> bool:
    """For the runner's child: settle, writing one line per thing left undone to the replica's stderr (fd 2 is
    already its log pipe), and go on: a replica without names, or without its disk at mount_path (its
    STACKBLAZE_DISK_PATH still works), still starts. True when a namespace was entered."""
    try:
        mode, missed = settle(hosts, binds, libc)
    except Exception as exc:  # a bug here must not cost the replica its start
        why = Unavailable(f"{type(exc).__name__}: {exc}")
        mode, missed = None, [(topic, why) for topic in ["names"] * (hosts is not None) + [b["target"] for b in binds]]
    for topic, why in missed:
        line = SAY.format(reason=why) if topic == "names" else SAY_DISK.format(target=topic, reason=why)
        try:
            os.write(2, line.encode(errors="replace"))
        except OSError:
            pass
    return mode is not None


def _probe(hosts: str, name: str, userns: bool | None) -> dict[str, Any]:
    uid = os.getuid()
    try:
        mode = enter(hosts, userns=userns)
    except Unavailable as exc:
        return {"ok": False, "reason": str(exc)}
    try:
        found = sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None, socket.AF_INET)})
    except OSError as exc:
        return {"ok": False, "mode": mode, "reason": f"{name} did not resolve inside the namespace ({exc})"}
    return {"ok": True, "mode": mode, "addresses": found, "uid": os.getuid(), "uid_before": uid}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4) or args[0] != "--probe" or (len(args) == 4 and args[3] != "--userns"):
        print("usage: python -m stackblaze.engine.local.mountns --probe HOSTS NAME [--userns]", file=sys.stderr)
        return 2
    result = _probe(args[1], args[2], True if len(args) == 4 else None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
