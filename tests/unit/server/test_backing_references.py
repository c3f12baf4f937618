"""`${{cache.REDIS_URL}}` as the control plane expands it: `<name>.internal` where replicas get the
project's hosts file (and always on a cluster), the service's own address where they cannot; a value that
takes in a password becomes a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.engine.names import NamesMode
from stackblaze.errors import UserError
from stackblaze.server.control import Control
from stackblaze.server.user_env import UserEnv
from stackblaze.settings import Settings
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store

ENV = UserEnv({"REDIS_URL": "${{cache.REDIS_URL}}", "DB": "${{ db.DATABASE_URL }}", "PLAIN": "x"}, frozenset())


def make_control(tmp_path: Path) -> Control:
    home = tmp_path / "home"
    home.mkdir()
    control = Control(settings=Settings(home=home, time_scale=1.0),
                      store=Store(home / "state.db", SecretBox(home / "secret.key")))
    for project, local in (("acme", True), ("acme@prod", False)):
        control.backing.rows.ensure(project, "cache", kind="redis", auth="none", local=local)
        control.backing.rows.ensure(project, "db", kind="postgres", auth="password", local=local)
    return control


def test_without_names_here_a_local_reference_is_the_address(tmp_path: Path) -> None:
    control = make_control(tmp_path)
    control.names = NamesMode(None, "user namespaces are blocked")
    done = control.backing.expand("acme", ENV)
    cache, db = control.backing.rows.row("acme", "cache"), control.backing.rows.row("acme", "db")
    assert cache is not None and db is not None and cache.address and cache.address.startswith("127.77.")
    assert done.values == {"REDIS_URL": f"redis://{cache.address}:6379",
                           "DB": f"postgresql://app:{db.password}@{db.address}:5432/app", "PLAIN": "x"}
    assert done.secrets == {done.values["DB"]}
    assert control.backing.expand("acme@prod", ENV).values["REDIS_URL"] == "redis://cache.internal:6379"


def test_with_names_both_engines_get_the_same_url(tmp_path: Path) -> None:
    control = make_control(tmp_path)
    control.names = NamesMode("mount", "a private mount namespace per replica")
    local, remote = control.backing.expand("acme", ENV), control.backing.expand("acme@prod", ENV)
    assert local.values["REDIS_URL"] == remote.values["REDIS_URL"] == "redis://cache.internal:6379"
    assert control.backing.worker_fields("acme") == {
        "internal": ("cache", "db"), "hosts": str(control.settings.home / "hosts" / "acme")}
    db = control.backing.rows.row("acme", "db")
    assert db is not None and f"{db.address} db.internal" in (control.settings.home / "hosts" / "acme").read_text()


def test_a_reference_to_nothing_fails_a_deploy_and_is_left_alone_at_a_start(tmp_path: Path) -> None:
    control = make_control(tmp_path)
    gone = UserEnv({"URL": "${{queue.REDIS_URL}}"}, frozenset())
    with pytest.raises(UserError, match="queue"):
        control.backing.expand("acme", gone)
    assert control.backing.expand("acme", gone, strict=False) == gone
