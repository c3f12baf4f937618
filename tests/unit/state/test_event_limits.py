"""Events are capped in size and pruned per project by count, age and bytes; destroy removes them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stackblaze.settings import EventLimits
from stackblaze.state.events import cap_details, cap_message
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import PRUNE_EVERY, Store


def open_store(tmp_path: Path, limits: EventLimits | None = None) -> Store:
    return Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"), limits=limits)


def test_last_lines_keep_the_newest_within_the_caps_and_say_what_was_cut() -> None:
    limits = EventLimits()
    lines = [f"line {n} " + "x" * (5000 if n == 49 else 10) for n in range(50)]
    payload, text = cap_details({"code": 1, "last_lines": lines}, limits)
    kept = payload["last_lines"]
    assert len(kept) == limits.lines
    assert kept[0] == "… [31 earlier lines cut]"
    assert kept[1].startswith("line 31 ") and kept[-1].startswith("line 49 ")
    assert len(kept[-1].encode()) <= limits.line_bytes and kept[-1].endswith("bytes cut]")
    assert payload["code"] == 1 and json.loads(text) == payload


def test_details_never_exceed_their_cap() -> None:
    limits = EventLimits()
    huge = {"last_lines": ["y" * 4000] * 100, "error": "e" * 100_000, "cause": ["c" * 3000] * 50, "code": 2}
    payload, text = cap_details(huge, limits)
    assert len(text) <= limits.details_bytes
    assert payload["code"] == 2 and payload["truncated"] is True
    assert len(cap_message("m" * 10_000).encode()) <= 1024


def test_pruned_by_count_per_project(tmp_path: Path) -> None:
    store = open_store(tmp_path, EventLimits(max_count=50))
    for n in range(3 * PRUNE_EVERY + 1):  # the last insert prunes
        store.add_event(project="busy", kind="exit", message=f"exit {n}")
    store.add_event(project="quiet", kind="deploy", message="deployed")
    kept = store.events(project="busy", limit=10_000)
    assert len(kept) == 50 and kept[-1].message == f"exit {3 * PRUNE_EVERY}"
    assert len(store.events(project="quiet")) == 1


def test_pruned_by_age_including_what_aged_while_the_daemon_was_down(tmp_path: Path) -> None:
    store = open_store(tmp_path, EventLimits(max_age=3600))
    now = time.time()
    for n in range(10):
        store.add_event(project="p", kind="exit", message=f"old {n}", at=now - 7200 + n)
    store.close()
    store = open_store(tmp_path, EventLimits(max_age=3600))
    store.add_event(project="p", kind="start", message="new")  # the first insert after a start prunes
    assert [e.message for e in store.events(project="p")] == ["new"]


def test_pruned_by_bytes(tmp_path: Path) -> None:
    store = open_store(tmp_path, EventLimits(max_bytes=200_000))
    for _ in range(2 * PRUNE_EVERY + 1):
        store.add_event(project="p", kind="exit", message="m", details={"last_lines": ["z" * 900] * 10})
    total = store.connection.execute("SELECT sum(size) FROM events WHERE project = 'p'").fetchone()[0]
    assert total <= 200_000


def test_destroy_removes_the_events_and_gives_the_pages_back(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for _ in range(500):
        store.add_event(project="gone", kind="exit", message="m", details={"last_lines": ["z" * 1000] * 12})
    store.add_event(project="other", kind="deploy", message="kept")
    store.save_project("gone", "/src", None)
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = (tmp_path / "state.db").stat().st_size
    store.delete_project("gone")
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = (tmp_path / "state.db").stat().st_size
    assert store.events(project="gone") == []
    assert [e.message for e in store.events(project="other")] == ["kept"]
    assert after < before / 4, (before, after)


def test_events_read_is_bounded(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add_event(project="p", kind="deploy", message="one")
    assert len(store.events(project="p", limit=10**30)) == 1


@pytest.mark.parametrize(("name", "raw"), [("STACKBLAZE_EVENTS_MAX", "lots"), ("STACKBLAZE_EVENTS_MAX_AGE", "-1d"),
                                            ("STACKBLAZE_EVENTS_MAX_BYTES", "1e9")])
def test_a_bad_limit_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, raw: str) -> None:
    from stackblaze.errors import UserError
    from stackblaze.settings import load_event_limits

    monkeypatch.setenv(name, raw)
    with pytest.raises(UserError) as raised:
        load_event_limits()
    assert str(raised.value).startswith(f"{name}: {raw!r} is not") and "\n" not in str(raised.value)


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stackblaze.settings import load_event_limits

    monkeypatch.setenv("STACKBLAZE_EVENTS_MAX", "500")
    monkeypatch.setenv("STACKBLAZE_EVENTS_MAX_AGE", "12h")
    monkeypatch.setenv("STACKBLAZE_EVENTS_MAX_BYTES", "8MiB")
    assert load_event_limits() == EventLimits(max_count=500, max_age=43200.0, max_bytes=8 << 20)
