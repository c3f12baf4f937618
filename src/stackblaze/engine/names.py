"""`<name>.internal` on one machine: each project's hosts file, and whether replicas can get it here.

A project's hosts file is a copy of the host's /etc/hosts plus a marked block of `IP NAME.internal` lines
(IPv4 only: IPv6-only private names are what breaks Redis clients elsewhere). The runner bind-mounts it over
/etc/hosts in every replica of the project (engine/local/mountns.py), so the file is only ever changed in
place: a bind mount pins the inode, and a file replaced by rename would no longer be the one replicas see.
glibc reads /etc/hosts on every lookup and Go's resolver re-reads it when its size or mtime changes, so a
name added while replicas run resolves in them within seconds.

`probe()` runs at daemon start and tries the real thing in a child process; the control plane keeps the
answer (`control.names`) and falls back to IP URLs when no mode works, and `doctor` shows it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HOST_HOSTS = Path("/etc/hosts")
MARK = "# stackblaze: this project's <name>.internal names, below (managed by stackblaze: edits are lost)\n"
SUFFIX = ".internal"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.internal")
PROBE_NAME = "stackblaze-probe.internal"
PROBE_ADDRESS = "127.77.255.254"
PROBE_TIMEOUT = 30.0


def hosts_path(home: Path, project: str) -> Path:
    """Where the project's hosts file lives: `<home>/hosts/<project key>` ("acme", "acme@prod")."""
    if not project or "/" in project or "\0" in project or project in (".", ".."):
        raise ValueError(f"project key {project!r} cannot name a file (expected e.g. 'acme')")
    return home / "hosts" / project


def check_entries(entries: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, ip) pairs sorted by name; ValueError naming the bad one (not `x.internal`, not IPv4)."""
    checked = []
    for name, ip in entries.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"hosts entry {name!r}: not a lower-case host name ending in .internal "
                             "(e.g. cache.internal)")
        try:
            address = ipaddress.IPv4Address(ip)
        except (ipaddress.AddressValueError, ValueError):
            raise ValueError(f"hosts entry {name}: {ip!r} is not an IPv4 address (e.g. 127.77.0.1); "
                             "only IPv4 is served") from None
        checked.append((name, str(address)))
    return sorted(checked)


class HostsFile:
    """One project's hosts file; `sync` makes it say exactly the given names (and the host's own lines)."""

    def __init__(self, path: Path | str, *, source: Path | str = HOST_HOSTS) -> None:
        self.path = Path(path)
        self.source = Path(source)

    def _head(self) -> bytes:
        try:
            host = self.source.read_bytes()
        except FileNotFoundError:
            host = b""
        if host and not host.endswith(b"\n"):
            host += b"\n"
        return host + MARK.encode()

    def sync(self, entries: Mapping[str, str]) -> bool:
        """Make the file the host's /etc/hosts plus `entries` (name.internal -> IPv4); True when it changed.

        Only additions: appended in one write. Anything else (a name removed or moved, the host's file
        changed): rewritten in place (same inode). Mode 0644: replicas read it as their own user."""
        wanted = check_entries(entries)
        head = self._head()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two syncs of one project (two threads, two daemons) in turn
            if os.fstat(fd).st_mode & 0o7777 != 0o644:
                os.fchmod(fd, 0o644)  # the daemon's umask (077) must not hide it from the workers
            current = _read_all(fd)
            present = _entries_after(current, head)
            if present is not None and all(dict(wanted).get(name) == ip for name, ip in present):
                have = {name for name, _ in present}
                added = "".join(f"{ip} {name}\n" for name, ip in wanted if name not in have)
                if not added:
                    return False
                _write_all(fd, added.encode(), len(current))
                return True
            text = head + "".join(f"{ip} {name}\n" for name, ip in wanted).encode()
            _write_all(fd, text, 0)
            os.ftruncate(fd, len(text))
            return True
        finally:
            os.close(fd)

    def entries(self) -> dict[str, str]:
        """The names the file holds now (name -> ip); {} when it does not exist."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        _, mark, block = text.partition(MARK.encode())
        found = {}
        for line in block.decode(errors="replace").splitlines() if mark else []:
            parts = line.split()
            if len(parts) == 2:
                found[parts[1]] = parts[0]
        return found


def _entries_after(current: bytes, head: bytes) -> list[tuple[str, str]] | None:
    """The (name, ip) lines after `head`, in file order; None when the file is not `head` + whole lines of
    ours (the host's file changed, or it is new or damaged): then it is rewritten."""
    if not current.startswith(head) or not current.endswith(b"\n"):
        return None
    found: list[tuple[str, str]] = []
    for line in current[len(head):].decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 2 or not NAME.fullmatch(parts[1]) or parts[1] in dict(found):
            return None
        found.append((parts[1], parts[0]))
    return found


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


@dataclass(frozen=True)
class NamesMode:
    """How replicas get `<name>.internal` here: "mount" (a root daemon's mount namespace), "userns" (an
    unprivileged user namespace), or None with the reason, in plain words."""

    mode: Literal["mount", "userns"] | None
    reason: str

    @property
    def available(self) -> bool:
        return self.mode is not None

    def to_dict(self) -> dict[str, str | None]:
        return {"mode": self.mode, "reason": self.reason}


def probe(*, userns: bool | None = None, python: str = sys.executable, timeout: float = PROBE_TIMEOUT,
          host_hosts: Path = HOST_HOSTS) -> NamesMode:
    """Try it for real: a child process enters the namespace the runner would use (a mount namespace as
    root, else a user namespace; `userns` forces one), bind-mounts a temporary hosts file and resolves a
    name with getaddrinfo. Blocking (seconds): call it in a thread."""
    with tempfile.TemporaryDirectory(prefix="stackblaze-names-") as folder:
        path = Path(folder) / "hosts"
        HostsFile(path, source=host_hosts).sync({PROBE_NAME: PROBE_ADDRESS})
        command = [python, "-m", "stackblaze.engine.local.mountns", "--probe", str(path), PROBE_NAME]
        if userns:
            command.append("--userns")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return NamesMode(None, f"the probe could not run ({exc})")
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return NamesMode(None, f"the probe failed (exit {done.returncode}: {said})")
    mode = answer.get("mode")
    if not answer.get("ok"):
        return NamesMode(None, str(answer.get("reason") or "the probe failed"))
    if answer.get("addresses") != [PROBE_ADDRESS]:
        return NamesMode(None, f"{PROBE_NAME} resolved to {answer.get('addresses')} inside the namespace, "
                               f"not {PROBE_ADDRESS} (nscd or an NSS module answering before /etc/hosts?)")
    if answer.get("uid") != answer.get("uid_before"):
        return NamesMode(None, f"the worker's uid would read {answer.get('uid')} instead of "
                               f"{answer.get('uid_before')} inside the user namespace")
    if _resolves(PROBE_NAME):  # the mount reached the host: never use it
        return NamesMode(None, f"{PROBE_NAME} resolves outside the namespace too: the mount propagated to the host")
    if mode == "mount":
        return NamesMode("mount", "a private mount namespace per replica (the daemon runs as root)")
    if mode == "userns":
        return NamesMode("userns", "an unprivileged user and mount namespace per replica")
    return NamesMode(None, f"the probe answered an unknown mode {mode!r}")


def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None, socket.AF_INET)
    except OSError:
        return False
    return True
