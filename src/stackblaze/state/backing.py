"""Backing services in the SQLite store: each one's loopback address (local projects) and password.

Shares the Store's connection. A (project, service) keeps its address from its first deploy until it
leaves the spec or its project is destroyed; no other service gets that address meanwhile (the column is
UNIQUE). The password is made once (it is what the data on the disk was set up with) and stored encrypted
with the store's key; it is used only while the service says `auth: password`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stackblaze.errors import ConflictError
from stackblaze.state.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS backing (
  project TEXT NOT NULL, service TEXT NOT NULL, kind TEXT NOT NULL, auth TEXT NOT NULL,
  address TEXT UNIQUE, password BLOB NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (project, service)
);
"""
# 127.0.0.0/16 holds 127.0.0.1, Debian's 127.0.1.1 hostname line and systemd-resolved's 127.0.0.53/54.
BLOCK = ipaddress.IPv4Network("127.77.0.0/16")


HOSTS = BLOCK.num_addresses - 2  # without the network and broadcast addresses


def first_address(home: Path) -> ipaddress.IPv4Address:
    """Where a home's search for a free address starts: a point of BLOCK derived from the home's path. Two
    daemons on one machine (two users' homes, or test runs side by side) that allocate at the same moment
    would both take the lowest free address, since neither server listens yet; from points far apart they do
    not. A home keeps its point across restarts, so its addresses stay predictable."""
    digest = hashlib.sha256(str(home).encode()).digest()
    return BLOCK.network_address + 1 + int.from_bytes(digest[:4], "big") % HOSTS


@dataclass(frozen=True)
class BackingRow:
    project: str
    service: str
    kind: str  # redis | postgres
    auth: str  # none | password
    address: str | None  # None on a cluster target: the Service's cluster IP is the cluster's business
    password: str  # decrypted: never print it, log it or put it in an event

    @property
    def secret(self) -> str | None:
        """The password the service is reached with; None with `auth: none`."""
        return self.password if self.auth == "password" else None


class BackingStore:
    def __init__(self, store: Store, *, first: ipaddress.IPv4Address | None = None) -> None:
        """`first`: where the search for a free address starts (first_address(home)); BLOCK's lowest if None."""
        self._store = store
        self._first = int(first or BLOCK.network_address + 1) - int(BLOCK.network_address) - 1
        self._db = store.connection
        self._db.executescript(SCHEMA)

    def rows(self, project: str | None = None) -> list[BackingRow]:
        query = "SELECT project, service, kind, auth, address, password FROM backing"
        args: tuple[str, ...] = ()
        if project is not None:
            query += " WHERE project = ?"
            args = (project,)
        found = self._db.execute(query + " ORDER BY project, service", args).fetchall()
        return [BackingRow(r[0], r[1], r[2], r[3], r[4], self._store.secrets.decrypt(r[5])) for r in found]

    def row(self, project: str, service: str) -> BackingRow | None:
        return next((r for r in self.rows(project) if r.service == service), None)

    def ensure(self, project: str, service: str, *, kind: str, auth: str, local: bool,
               busy: Callable[[str], bool] = lambda _: False) -> BackingRow:
        """The service's row, made on first use (an address when `local`, a password always); its kind and
        auth follow the spec. `busy`: whether something on the machine listens on an address already (another
        home's daemon allocates from the same block)."""
        with self._store.transaction():
            found = self.row(project, service)
            if found is None:
                address = self._free_address(busy) if local else None
                password = secrets.token_urlsafe(24)
                self._db.execute(
                    "INSERT INTO backing (project, service, kind, auth, address, password, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (project, service, kind, auth, address, self._store.secrets.encrypt(password), time.time()))
            elif (found.kind, found.auth) != (kind, auth):
                self._db.execute("UPDATE backing SET kind = ?, auth = ? WHERE project = ? AND service = ?",
                                 (kind, auth, project, service))
        row = self.row(project, service)
        assert row is not None
        return row

    def forget(self, project: str, service: str | None = None) -> list[BackingRow]:
        """Free the rows (addresses) of a service that left the spec, or of a whole project; returns them."""
        gone = [r for r in self.rows(project) if service is None or r.service == service]
        if service is None:
            self._db.execute("DELETE FROM backing WHERE project = ?", (project,))
        else:
            self._db.execute("DELETE FROM backing WHERE project = ? AND service = ?", (project, service))
        return gone

    def _free_address(self, busy: Callable[[str], bool]) -> str:
        """The first address of BLOCK from `first` on (wrapping round) that no service holds, skipping host
        parts .0 and .255 (some tools take them for a network or a broadcast address)."""
        taken = {r[0] for r in self._db.execute("SELECT address FROM backing WHERE address IS NOT NULL")}
        for i in range(HOSTS):
            address = BLOCK.network_address + 1 + (self._first + i) % HOSTS
            if address.packed[3] not in (0, 255) and str(address) not in taken and not busy(str(address)):
                return str(address)
        raise ConflictError(f"every address of {BLOCK} is taken by a backing service: remove some "
                            "(stackblaze destroy PROJECT, or drop them from their stackblaze.yaml)")
