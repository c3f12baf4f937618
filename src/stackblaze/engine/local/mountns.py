"""A replica's own view of /etc/hosts: the child side, between fork and exec (the runner imports this).

The process enters a private mount namespace and bind-mounts its project's hosts file (engine/names.py)
over /etc/hosts, so `<name>.internal` resolves for every resolver that reads the file (glibc, musl, Go's
pure resolver) in this replica and nowhere else; nscd, which would answer from the host's file, is hidden.
As root: unshare(CLONE_NEWNS). As another user: an unprivileged user namespace where we are root for the
mounts, then a second, nested one that maps the real uid back, so the worker sees its own uid and cannot
undo the mount (it has no capability over the namespace that owns it). No fork: the PID stays the one the
runner recorded. Standard library only.

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
    from collections.abc import Callable
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
             "setgroups": "denying setgroups in the user namespace",
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
    if libc is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError as exc:
            raise Unavailable(f"the C library could not be loaded ({exc})") from None
    if not os.path.isfile(hosts):
        raise Unavailable(f"the project's hosts file {hosts} does not exist")
    steps = _Steps(libc)
    uid, gid = os.geteuid(), os.getegid()
    if userns is None:
        userns = uid != 0
    if not userns:
        steps.unshare(CLONE_NEWNS, "mountns")
        _mounts(steps, hosts)
        return "mount"
    steps.unshare(CLONE_NEWUSER | CLONE_NEWNS, "userns")
    failed: Unavailable | None = None
    try:
        # Root in this namespace (only our own uid mapped): allowed to mount in the mount namespace it owns.
        steps.write("/proc/self/setgroups", "deny", "setgroups")
        steps.write("/proc/self/uid_map", f"0 {uid} 1", "uid_map")
        steps.write("/proc/self/gid_map", f"0 {gid} 1", "gid_map")
        _mounts(steps, hosts)
    except Unavailable as exc:
        failed = exc
    # Even after a failure: the worker must see its real uid, not 0. The nested namespace has no capability
    # over the one owning the mounts, so the worker cannot unmount the file either.
    if os.geteuid() == 0:
        try:
            steps.unshare(CLONE_NEWUSER, "userns")
            steps.write("/proc/self/setgroups", "deny", "setgroups")
            steps.write("/proc/self/uid_map", f"{uid} 0 1", "uid_map")
            steps.write("/proc/self/gid_map", f"{gid} 0 1", "gid_map")
        except Unavailable as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
    return "userns"


def _mounts(steps: _Steps, hosts: str) -> None:
    # Slave first, never skipped: on a shared root (systemd's default) the bind below would otherwise appear
    # on the host. Slave, not private, so that host mounts made later still reach the replica.
    steps.mount(None, "/", None, MS_REC | MS_SLAVE, None)
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


def enter_or_say(hosts: str, libc: Any = None) -> bool:
    """For the runner's child: enter, or write one line saying why not to the replica's stderr (fd 2 is
    already its log pipe) and go on: a replica without names still starts."""
    try:
        enter(hosts, libc)
        return True
    except Unavailable as exc:
        reason = str(exc)
    except Exception as exc:  # a bug here must not cost the replica its start
        reason = f"{type(exc).__name__}: {exc}"
    try:
        os.write(2, SAY.format(reason=reason).encode(errors="replace"))
    except OSError:
        pass
    return False


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
