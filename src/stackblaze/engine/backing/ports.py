"""Who listens on a TCP port, read from /proc (no psutil in src/): the listening sockets of
/proc/net/tcp and tcp6, and the process whose fds hold each socket's inode."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    address: str  # "0.0.0.0", "::", "127.77.0.1"
    port: int
    inode: int
    pid: int | None  # None: no process of ours can see it (another user's, without root)

    def holder(self) -> str:
        if self.pid is None:
            return "a process this daemon cannot see"
        try:
            name = Path(f"/proc/{self.pid}/comm").read_text().strip()
        except OSError:
            name = "?"
        return f"pid {self.pid} ({name})"


def _decode(hex_address: str) -> str:
    """/proc/net/tcp's address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    found = ipaddress.ip_address(words)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return str(found.ipv4_mapped)
    return str(found)


def _listening(proc: Path) -> Iterator[tuple[str, str, int]]:
    """(hex address, hex port, inode) of each listening socket in /proc/net/tcp and tcp6; the address is
    left to decode, which only the rows a caller wants need."""
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 10 and parts[3] == LISTEN:
                address, _, hex_port = parts[1].partition(":")
                yield address, hex_port, int(parts[9])


def listeners(port: int, proc: Path = Path("/proc")) -> list[Listener]:
    """Every socket listening on `port`, IPv4 and IPv6, with its holder's pid."""
    found = [(_decode(address), inode) for address, hex_port, inode in _listening(proc) if int(hex_port, 16) == port]
    owners = _owners({inode for _, inode in found}, proc)
    return [Listener(address, port, inode, owners.get(inode)) for address, inode in found]


def _owners(inodes: set[int], proc: Path) -> dict[int, int]:
    """inode -> the lowest pid holding it (a forked server's parent, usually)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, int] = {}
    if not wanted:
        return owners
    for entry in sorted((p for p in proc.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            fds = os.listdir(entry / "fd")
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in owners:
                owners[inode] = int(entry.name)
        if len(owners) == len(wanted):
            break
    return owners


def listening_on(address: str, proc: Path = Path("/proc")) -> bool:
    """Whether anything listens on `address`, any port (no pid lookup: cheap)."""
    return any(_decode(found) == address for found, _, _ in _listening(proc))


def conflict(address: str, port: int) -> Listener | None:
    """A listener that keeps a server from binding `address`:`port`: one on that address, or on every
    address (0.0.0.0, or :: that also takes IPv4)."""
    for listener in listeners(port):
        if listener.address in (address, "0.0.0.0", "::"):
            return listener
    return None
