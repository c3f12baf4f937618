"""Backing services' rows in the SQLite store: one loopback address each, kept while the service exists,
never two services on one, freed with the service; a password made once and stored encrypted."""

from __future__ import annotations

from pathlib import Path

from stackblaze.state.backing import BLOCK, BackingStore, first_address
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store


def open_rows(tmp_path: Path) -> tuple[Store, BackingStore]:
    store = Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))
    return store, BackingStore(store)


def test_addresses_are_fixed_unique_and_freed_with_their_service(tmp_path: Path) -> None:
    store, rows = open_rows(tmp_path)
    cache = rows.ensure("acme", "cache", kind="redis", auth="none", local=True)
    db = rows.ensure("acme", "db", kind="postgres", auth="none", local=True)
    other = rows.ensure("beta", "cache", kind="redis", auth="none", local=True)
    assert [cache.address, db.address, other.address] == ["127.77.0.1", "127.77.0.2", "127.77.0.3"]
    again = rows.ensure("acme", "cache", kind="redis", auth="password", local=True)
    assert (again.address, again.password, again.auth) == (cache.address, cache.password, "password")
    store.close()

    store, rows = open_rows(tmp_path)  # a daemon restart: the same rows
    assert rows.row("acme", "db") == db
    assert [r.service for r in rows.forget("acme", "db")] == ["db"]
    assert rows.row("acme", "db") is None
    assert rows.ensure("beta", "queue", kind="redis", auth="none", local=True).address == "127.77.0.2"
    assert {r.service for r in rows.forget("acme")} == {"cache"}
    assert [r.project for r in rows.rows()] == ["beta", "beta"]


def test_host_parts_0_and_255_and_busy_addresses_are_skipped(tmp_path: Path) -> None:
    _, rows = open_rows(tmp_path)
    seen = [rows.ensure("acme", f"s{n}", kind="redis", auth="none", local=True,
                        busy=lambda address: address == "127.77.1.1").address for n in range(256)]
    assert seen[:2] == ["127.77.0.1", "127.77.0.2"] and seen[253] == "127.77.0.254"
    assert seen[254] == "127.77.1.2", "127.77.0.255, 127.77.1.0 and the busy 127.77.1.1 are skipped"
    assert len(set(seen)) == 256 and not any(a is None or a.endswith((".0", ".255")) for a in seen)


def test_a_cluster_target_has_a_password_and_no_address(tmp_path: Path) -> None:
    _, rows = open_rows(tmp_path)
    row = rows.ensure("acme@prod", "cache", kind="redis", auth="password", local=False)
    assert row.address is None and row.secret == row.password and len(row.password) >= 24
    assert rows.ensure("acme", "cache", kind="redis", auth="none", local=True).secret is None


def test_the_password_is_encrypted_at_rest(tmp_path: Path) -> None:
    store, rows = open_rows(tmp_path)
    password = rows.ensure("acme", "cache", kind="redis", auth="password", local=True).password
    store.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("state.db*"))
    assert password.encode() not in raw


def test_each_home_starts_its_search_at_its_own_point_and_wraps_round(tmp_path: Path) -> None:
    """Two daemons allocating at the same moment (neither server listening yet) would take the same lowest
    address; two homes start apart, each always at the same point."""
    one, two = first_address(tmp_path / "one"), first_address(tmp_path / "two")
    assert one != two and one == first_address(tmp_path / "one") and one in BLOCK and two in BLOCK
    store = Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))
    rows = BackingStore(store, first=one)
    assert rows.ensure("acme", "cache", kind="redis", auth="none", local=True).address == str(one)
    last = BackingStore(store, first=BLOCK.broadcast_address - 1)  # 127.77.255.254, then round to the start
    assert [last.ensure("acme", f"s{n}", kind="redis", auth="none", local=True).address for n in range(2)] == [
        "127.77.255.254", "127.77.0.1"]
