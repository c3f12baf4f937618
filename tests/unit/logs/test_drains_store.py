"""Drains in SQLite: the URL encrypted at rest, cursors and counters saved together and kept across a reopen."""

from __future__ import annotations

from pathlib import Path

from stackblaze.state.drains import DrainStore
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store


def open_store(tmp_path: Path) -> tuple[Store, DrainStore]:
    store = Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))
    return store, DrainStore(store)


def test_drains_cursors_and_counters_persist_and_the_url_is_encrypted(tmp_path: Path) -> None:
    store, drains = open_store(tmp_path)
    row = drains.add(project="acme", service=None, url="https://me:hunter2@h/in")
    drains.save_progress(row.id, positions={("w", 1): (11, 100), ("w", 2): (12, 0)}, sent=5, retried=0, dropped=0)
    drains.save_progress(row.id, positions={("w", 1): (13, 40)}, sent=3, retried=2, dropped=1)
    drains.save_health(row.id, error="HTTP 503")
    store.close()
    assert b"hunter2" not in (tmp_path / "state.db").read_bytes()

    store, drains = open_store(tmp_path)
    again = drains.get(row.id)
    assert again is not None and again.url == "https://me:hunter2@h/in"
    assert again.counters() == {"sent": 8, "retried": 2, "dropped": 1}
    assert again.last_error == "HTTP 503" and again.failing_since is not None
    assert drains.load_positions(row.id) == {("w", 1): (13, 40), ("w", 2): (12, 0)}
    drains.save_health(row.id, error=None)
    assert drains.get(row.id).last_error is None  # type: ignore[union-attr]
    assert [d.id for d in drains.all("acme")] == [row.id] and drains.all("other") == []
    assert drains.delete(row.id) and drains.get(row.id) is None and drains.load_positions(row.id) == {}
    store.close()
