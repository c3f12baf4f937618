"""The user env in builds: install and build steps see it, secrets never reach a log, and a variable an
installer reads keys the dependency layer while the others leave it alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.build.builder import MASK, Builder, BuildFailed, install_env
from stackblaze.build.plan import BuildPlan
from tests.unit.build.test_builder import plan as builder_plan

SECRET = "tok-3f9a1c77e2"
# Honest fakes: the installer records the index it was given, the build the variables it saw.
INSTALL = 'echo "$PIP_INDEX_URL" > "$DEPS/index.txt" && echo "installing from $PIP_INDEX_URL"'
BUILD = 'echo "$GREETING" > greeting.txt && test -n "$TOKEN" && echo "token is $TOKEN"'


def plan(**changes: object) -> BuildPlan:
    """test_builder's plan, with steps that show what env they saw."""
    return builder_plan(**{"version": None, "version_source": None, "install": INSTALL, "build": BUILD,
                           "start": "python app.py", **changes})


@pytest.fixture
def app(tmp_path: Path) -> Path:
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text("redis==5.0\n")
    (source / "app.py").write_text("print('v1')\n")
    return source


def builder(tmp_path: Path, env: dict[str, str], redact: tuple[str, ...] = ()) -> Builder:
    return Builder(cache_dir=tmp_path / "cache", builds_dir=tmp_path / "builds", base_env={"PATH": "/usr/bin:/bin"},
                   user_env=env, redact=redact)


ENV = {"PIP_INDEX_URL": "https://mirror.example/simple", "GREETING": "hello", "TOKEN": SECRET,
       "WORKER_CONCURRENCY": "4"}


def test_install_and_build_see_the_user_env(tmp_path: Path, app: Path) -> None:
    result = builder(tmp_path, ENV).build(plan(), source=app, log_path=tmp_path / "b.log", progress=lambda _: None)
    assert result.deps_dir is not None
    assert (result.deps_dir / "index.txt").read_text() == "https://mirror.example/simple\n"
    assert (result.path / "greeting.txt").read_text() == "hello\n"


def test_the_user_env_wins_over_the_plan_env_as_at_run_time(tmp_path: Path, app: Path) -> None:
    custom = plan(env={"PATH": "$DEPS/venv/bin:$PATH", "WEB_CONCURRENCY": "1"}, build='echo "$WEB_CONCURRENCY" > c')
    result = builder(tmp_path, {"WEB_CONCURRENCY": "8"}).build(custom, source=app, log_path=tmp_path / "b.log",
                                                               progress=lambda _: None)
    assert (result.path / "c").read_text() == "8\n"


def test_a_secret_never_reaches_the_log_or_the_progress(tmp_path: Path, app: Path) -> None:
    lines: list[str] = []
    echoing = plan(build=f'test "$TOKEN" = {SECRET} && echo "token is $TOKEN" >&2')  # the echo line names it too
    builder(tmp_path, ENV, (SECRET,)).build(echoing, source=app, log_path=tmp_path / "b.log", progress=lines.append)
    log = (tmp_path / "b.log").read_text()
    assert f"token is {MASK}" in log and f"==> building: test \"$TOKEN\" = {MASK}" in log
    assert SECRET not in log and not any(SECRET in line for line in lines)
    assert f"    token is {MASK}" in lines


def test_a_failure_carries_no_secret(tmp_path: Path, app: Path) -> None:
    multiline = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----"
    failing = plan(build='echo "token is $TOKEN"; printf "%s\\n" "$KEY"; exit 2')
    with pytest.raises(BuildFailed) as failure:
        builder(tmp_path, {**ENV, "KEY": multiline}, (SECRET, multiline)).build(
            failing, source=app, log_path=tmp_path / "b.log", progress=lambda _: None)
    shown = "\n".join([str(failure.value), *failure.value.tail, (tmp_path / "b.log").read_text()])
    assert f"token is {MASK}" in failure.value.tail
    assert SECRET not in shown and "QUJDREVGR0hJSktMTU5PUA==" not in shown


@pytest.mark.parametrize(("name", "value"), [("PIP_INDEX_URL", "https://other.example/simple"),
                                             ("NODE_ENV", "production"), ("TOKEN", "another-token")])
def test_a_variable_installers_read_gets_a_new_layer_and_others_do_not(tmp_path: Path, app: Path, name: str,
                                                                      value: str) -> None:
    first = builder(tmp_path, ENV).build(plan(), source=app, log_path=tmp_path / "1.log", progress=lambda _: None)
    changed = builder(tmp_path, {**ENV, name: value}).build(plan(), source=app, log_path=tmp_path / "2.log",
                                                            progress=lambda _: None)
    if install_env({name: value}):
        assert changed.installed and changed.deps_dir != first.deps_dir
    else:  # TOKEN: not an installer's, so the layer stays; the build step saw it, so the tree is new
        assert not changed.installed and changed.deps_dir == first.deps_dir
    assert changed.built and changed.build_id != first.build_id


def test_a_worker_setting_reinstalls_nothing_and_without_a_build_step_rebuilds_nothing(tmp_path: Path,
                                                                                       app: Path) -> None:
    quiet = plan(build=None)
    first = builder(tmp_path, ENV).build(quiet, source=app, log_path=tmp_path / "1.log", progress=lambda _: None)
    again = builder(tmp_path, {**ENV, "WORKER_CONCURRENCY": "16"}).build(
        quiet, source=app, log_path=tmp_path / "2.log", progress=lambda _: None)
    assert (again.installed, again.built, again.deps_dir, again.build_id) == (
        False, False, first.deps_dir, first.build_id)
    assert "dependencies unchanged" in (tmp_path / "2.log").read_text()


def test_no_user_env_keeps_the_keys_of_a_plain_build(tmp_path: Path, app: Path) -> None:
    """Upgrading to a builder that knows the user env rebuilds nothing for a project without one."""
    plain = Builder(cache_dir=tmp_path / "cache", builds_dir=tmp_path / "builds", base_env={"PATH": "/usr/bin:/bin"})
    first = plain.build(plan(build=None), source=app, log_path=tmp_path / "1.log", progress=lambda _: None)
    again = builder(tmp_path, {}).build(plan(build=None), source=app, log_path=tmp_path / "2.log",
                                        progress=lambda _: None)
    assert (again.installed, again.built, again.cache_key) == (False, False, first.cache_key)
    assert not (tmp_path / "cache" / "env-digest.key").exists()


def test_a_secret_takes_part_in_a_key_only_as_a_keyed_digest(tmp_path: Path, app: Path) -> None:
    """Two homes give the same env different keys: a key cannot be matched against guessed values."""
    one = builder(tmp_path / "one", {"NPM_TOKEN": SECRET}).build(plan(build=None), source=app,
                                                                 log_path=tmp_path / "1.log", progress=lambda _: None)
    two = builder(tmp_path / "two", {"NPM_TOKEN": SECRET}).build(plan(build=None), source=app,
                                                                 log_path=tmp_path / "2.log", progress=lambda _: None)
    assert one.cache_key != two.cache_key
    stored = [p for p in (tmp_path / "one").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert stored == []


@pytest.mark.parametrize(("name", "read"), [
    ("PIP_INDEX_URL", True), ("UV_INDEX_URL", True), ("npm_config_registry", True), ("NPM_TOKEN", True),
    ("NODE_ENV", True), ("GOPROXY", True), ("GOFLAGS", True), ("CGO_ENABLED", True), ("BUNDLE_WITHOUT", True),
    ("CFLAGS", True), ("PYTHONPATH", True), ("WORKER_CONCURRENCY", False), ("DATABASE_URL", False),
    ("GOOGLE_APPLICATION_CREDENTIALS", False), ("CCACHE_DIR", False), ("MY_PIP_INDEX_URL", False),
])
def test_which_variables_installers_read(name: str, read: bool) -> None:
    assert (name in install_env({name: "x"})) is read
