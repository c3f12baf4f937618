"""The store when SQLite says "database or disk is full". SQLite's own `max_page_count` limit produces
exactly that error (SQLITE_FULL) on a real file, without filling a filesystem (the reliability tests do)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import DiskFullError
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import ServiceRow, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))


def full(store: Store) -> None:
    pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
    store.connection.execute(f"PRAGMA max_page_count={pages}")


def room(store: Store) -> None:
    store.connection.execute("PRAGMA max_page_count=1073741823")


def service(name: str) -> ServiceRow:
    return ServiceRow("p", name, {"env": {"PAD": "x" * 6000}}, 1, 1, True, 0)  # more than the page it may find


def test_a_write_says_disk_full_naming_the_database_and_reads_keep_working(store: Store, tmp_path: Path) -> None:
    store.save_service(service("kept"))
    full(store)
    with pytest.raises(DiskFullError) as raised:
        store.add_event(project="p", kind="exit", message="x", details={"last_lines": ["y" * 1000] * 20})
    assert str(raised.value) == f"disk full ({tmp_path / 'state.db'}): free space and retry"
    with pytest.raises(DiskFullError):
        store.save_service(service("new"))
    assert [s.name for s in store.services("p")] == ["kept"]
    room(store)
    store.save_service(service("new"))  # the same connection, no reopening
    assert [s.name for s in store.services("p")] == ["kept", "new"]


def test_a_failed_transaction_leaves_the_connection_usable(store: Store) -> None:
    store.save_service(service("a"))
    full(store)
    with pytest.raises(DiskFullError), store.transaction():
        for n in range(200):
            store.connection.execute("INSERT INTO env (project, service, key, value, secret) VALUES (?, '', ?, ?, 0)",
                                     ("p", f"K{n}", b"v" * 4000))
    assert not store.connection.in_transaction
    room(store)
    with store.transaction():
        store.set_env("p", "", "K", "v", secret=False)
    assert [v.key for v in store.env("p")] == ["K"]


def test_replica_statuses_wait_in_memory_until_there_is_room(store: Store) -> None:
    full(store)
    for replica in range(1, 40):
        store.save_replica_status("p", "w", replica, {"restart_count": replica, "pad": "x" * 6000})
    store.delete_replica_status("p", "w", 39)
    assert store.unsaved_statuses == 39
    seen = store.replica_statuses("p")  # what the supervisor would read back: the latest, saved or not
    assert len(seen) == 38 and seen[("w", 5)]["restart_count"] == 5
    room(store)
    store.save_replica_status("p", "w", 1, {"restart_count": 100})
    assert store.unsaved_statuses == 0
    fresh = Store(Path(store.path), SecretBox(Path(store.path).with_name("secret.key")))
    saved = fresh.replica_statuses("p")
    assert len(saved) == 38 and saved[("w", 1)]["restart_count"] == 100 and ("w", 39) not in saved


def test_drain_progress_waits_in_memory_and_is_saved_with_the_next_batch(store: Store) -> None:
    from stackblaze.state.drains import DrainStore

    drains = DrainStore(store)
    row = drains.add(project="p", service=None, url="https://h/in")
    drains.save_progress(row.id, positions={("w", 1): (7, 10)}, sent=1, retried=0, dropped=0)
    full(store)
    many = {("w", n): (7, 1000 + n) for n in range(1, 400)}  # more rows than the pages it may find
    drains.save_progress(row.id, positions=many, sent=5, retried=1, dropped=0)  # does not raise
    drains.save_health(row.id, error="HTTP 503")
    assert drains.load_positions(row.id) == {("w", 1): (7, 10)}
    room(store)
    drains.save_progress(row.id, positions={("w", 1): (7, 2000)}, sent=2, retried=0, dropped=0)
    saved = drains.get(row.id)
    assert saved is not None and saved.counters() == {"sent": 8, "retried": 1, "dropped": 0}
    assert drains.load_positions(row.id) == {**many, ("w", 1): (7, 2000)}
