"""A backing service's disk: a directory only its server's user can enter, and files written into it as
that user would (the daemon may be root; the server never is)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stackblaze.errors import UserError

User = Mapping[str, Any] | None  # the runner's spawn fields {"uid", "gid", ...}; None: the daemon's own user


class PrepareFailed(UserError):
    """A backing service's disk or first setup could not be made (initdb failed, a disk from another version)."""


def make_dir(path: Path, user: User) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _own(path, user)
    os.chmod(path, 0o700)


def write_private(path: Path, text: str, user: User) -> None:
    """A 0600 file of the server's user (it may carry a password): written beside, then renamed in."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    _own(temporary, user)
    os.replace(temporary, path)


def run_as(argv: Sequence[str], user: User, *, cwd: Path, stdin: str | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    """Run a setup command (initdb, a single-user postgres) as the server's user, its output captured."""
    switch: dict[str, Any] = {}
    if user is not None:
        switch = {"user": int(user["uid"]), "group": int(user["gid"]),
                  "extra_groups": [int(g) for g in user.get("groups", [])]}
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": str(cwd)}
    try:
        return subprocess.run(list(argv), cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False, **switch)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PrepareFailed(f"{argv[0]}: {exc}") from None


def _own(path: Path, user: User) -> None:
    if user is not None:
        os.chown(path, int(user["uid"]), int(user["gid"]))
