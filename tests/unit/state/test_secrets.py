"""Nothing stored beside a secret confirms a guess without the key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store


def test_the_key_file_is_private_and_the_digest_is_keyed(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "home" / "secret.key")
    digest = box.keyed_digest("hunter2")
    assert (tmp_path / "home" / "secret.key").stat().st_mode & 0o777 == 0o600
    assert digest == box.keyed_digest("hunter2")
    assert digest != hashlib.sha256(b"hunter2").hexdigest()  # an unkeyed hash would confirm the guess
    other = SecretBox(tmp_path / "other.key")
    assert other.keyed_digest("hunter2") != digest


def test_state_db_and_its_journal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "state.db", SecretBox(tmp_path / "secret.key"))
        store.set_env("p", "", "TOKEN", "s3cret", secret=True)
    finally:
        os.umask(old)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    raw = b"".join((tmp_path / name).read_bytes() for name in ("state.db", "state.db-wal"))
    assert b"s3cret" not in raw


def desired_config(home: Path, secret: str) -> str:
    from stackblaze.server.control import Control
    from stackblaze.settings import Settings
    from stackblaze.state.store import ReleaseRow, ServiceRow

    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "state.db", SecretBox(home / "secret.key"))
    store.save_service(ServiceRow("p", "w", {"project_env": {}, "env": {}, "stop_signal_number": 15,
                                             "shutdown_grace": 30.0, "strategy": "rolling", "user": "root"},
                                  1, 1, True, 0))
    if store.release("p", "w", 1) is None:
        store.add_release(ReleaseRow("p", "w", 1, str(home), "d", 0.0, {"start": "python3 w.py"}))
    store.set_env("p", "", "TOKEN", secret, secret=True)
    desired = Control(settings=Settings(home=home, time_scale=1.0), store=store).desired("p", "w")
    assert desired is not None and desired.env["TOKEN"] == secret
    return desired.config


def test_the_stored_config_digest_takes_secrets_keyed(tmp_path: Path) -> None:
    """The replicas' config digest is saved in state.db: with the secret hashed plainly, anyone reading it
    could confirm a guess offline. Keyed, the same secret under another key gives another digest."""
    first = desired_config(tmp_path / "a", "hunter2")
    assert desired_config(tmp_path / "a", "hunter3") != first  # a changed secret still rolls the replicas
    assert desired_config(tmp_path / "b", "hunter2") != first
