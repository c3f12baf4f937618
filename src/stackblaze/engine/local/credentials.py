"""The runner's side of a replica's `user`: become it in the child, between fork and exec.

The spawn request carries {"uid", "gid", "groups", "name"} (resolved by the daemon). Standard library only:
the runner imports this. A change of credentials clears PR_SET_PDEATHSIG, so the runner sets that after.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PR_SET_NO_NEW_PRIVS = 38


def become(user: dict[str, Any] | None, libc: ctypes.CDLL | None) -> None:
    """Switch to `user` for good (real, effective and saved ids, supplementary groups) and forbid gaining
    privileges again (no_new_privs: setuid binaries and file capabilities do nothing). Raises when any
    step fails: a replica meant to run unprivileged must fail to start rather than run as root."""
    if user is None:
        return
    uid, gid = int(user["uid"]), int(user["gid"])
    os.setgroups([int(group) for group in user.get("groups") or [gid]])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PermissionError(f"could not become {user.get('name', uid)}")
    if libc is None or libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PermissionError("could not set no_new_privs")
