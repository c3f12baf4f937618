"""The builder: dependency layer cached by lockfiles, build trees by content; failures leave nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.build.builder import Builder, BuildFailed
from stackblaze.build.plan import BuildPlan

# A fake installer that is honest about what it sees: it records its inputs and "installs" into $DEPS.
INSTALL = 'ls -A > "$DEPS/inputs.txt" && cat requirements.txt > "$DEPS/installed.txt" && echo installed'


def plan(**changes: object) -> BuildPlan:
    fields: dict[str, object] = dict(
        service="worker", root=".", runtime="python", version="3.11", version_source=".python-version",
        resolved_version="3.11.7", package_manager="pip", tool_version="24.0", install=INSTALL,
        build="cp app.py built.py", start="python built.py", lockfiles=("requirements.txt",),
        env={"PATH": "$DEPS/venv/bin:$PATH"}, platform="linux-x86_64",
    )
    fields.update(changes)
    return BuildPlan(**fields)  # type: ignore[arg-type]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    source = tmp_path / "app"
    source.mkdir()
    (source / "requirements.txt").write_text("redis==5.0\n")
    (source / "app.py").write_text("print('v1')\n")
    return source


def make_builder(tmp_path: Path) -> Builder:
    return Builder(cache_dir=tmp_path / "cache", builds_dir=tmp_path / "builds", base_env={"PATH": "/usr/bin:/bin"})


def test_install_sees_only_lockfiles_and_a_code_edit_installs_nothing(tmp_path: Path, app: Path) -> None:
    builder, lines = make_builder(tmp_path), []
    first = builder.build(plan(), source=app, log_path=tmp_path / "b1.log", progress=lines.append)
    assert first.installed and first.built
    assert first.deps_dir is not None and (first.deps_dir / "inputs.txt").read_text() == "requirements.txt\n"
    assert (first.path / "built.py").read_text() == "print('v1')\n"
    (app / "app.py").write_text("print('v2')\n")
    second = builder.build(plan(), source=app, log_path=tmp_path / "b2.log", progress=lines.append)
    assert not second.installed and second.built and second.deps_dir == first.deps_dir
    assert "installed" not in (tmp_path / "b2.log").read_text().split("==>")[-1]
    assert "dependencies unchanged" in (tmp_path / "b2.log").read_text()
    assert (second.path / "built.py").read_text() == "print('v2')\n"
    assert (first.path / "built.py").read_text() == "print('v1')\n"  # the old build is untouched


def test_unchanged_tree_reuses_the_build(tmp_path: Path, app: Path) -> None:
    builder = make_builder(tmp_path)
    first = builder.build(plan(), source=app, log_path=tmp_path / "1.log", progress=lambda _: None)
    again = builder.build(plan(), source=app, log_path=tmp_path / "2.log", progress=lambda _: None)
    assert (again.path, again.built, again.installed) == (first.path, False, False)


def test_an_edit_of_the_spec_beside_the_code_is_not_a_new_release(tmp_path: Path, app: Path) -> None:
    """Adding a service (or an env value) to stackblaze.yaml must not roll the workers whose code sits beside
    it; a Procfile or code edit still does. A spec in a subdirectory is the app's own file."""
    builder = make_builder(tmp_path)
    (app / "stackblaze.yaml").write_text("project: a\nservices: [{name: worker}]\n")
    first = builder.build(plan(), source=app, log_path=tmp_path / "1.log", progress=lambda _: None)
    (app / "stackblaze.yaml").write_text("project: a\nservices: [{name: worker}, {name: cache, type: redis}]\n")
    again = builder.build(plan(), source=app, log_path=tmp_path / "2.log", progress=lambda _: None)
    assert (again.build_id, again.built) == (first.build_id, False)
    (app / "conf").mkdir()
    (app / "conf" / "stackblaze.yaml").write_text("mine: true\n")
    nested = builder.build(plan(), source=app, log_path=tmp_path / "3.log", progress=lambda _: None)
    assert nested.build_id != first.build_id
    (app / "Procfile").write_text("worker: python app.py\n")
    assert builder.build(plan(), source=app, log_path=tmp_path / "4.log",
                         progress=lambda _: None).build_id != nested.build_id


def test_changed_lockfile_installs_again_into_a_new_layer(tmp_path: Path, app: Path) -> None:
    builder = make_builder(tmp_path)
    first = builder.build(plan(), source=app, log_path=tmp_path / "1.log", progress=lambda _: None)
    (app / "requirements.txt").write_text("redis==5.1\n")
    second = builder.build(plan(), source=app, log_path=tmp_path / "2.log", progress=lambda _: None)
    assert second.installed and second.deps_dir != first.deps_dir
    assert second.deps_dir is not None and (second.deps_dir / "installed.txt").read_text() == "redis==5.1\n"


def test_failed_install_keeps_no_layer_and_reports_the_last_lines(tmp_path: Path, app: Path) -> None:
    builder = make_builder(tmp_path)
    broken = plan(install='echo "ERROR: No matching distribution found for redis==99" >&2; exit 1')
    with pytest.raises(BuildFailed) as failure:
        builder.build(broken, source=app, log_path=tmp_path / "b.log", progress=lambda _: None)
    assert failure.value.tail == ["ERROR: No matching distribution found for redis==99"]
    assert str(failure.value).startswith("install failed (exit 1)")
    assert list((tmp_path / "cache" / "deps").glob("*/.complete")) == []
    assert not (tmp_path / "builds").exists() or not any((tmp_path / "builds").iterdir())


def test_failed_build_leaves_no_tree(tmp_path: Path, app: Path) -> None:
    builder = make_builder(tmp_path)
    with pytest.raises(BuildFailed, match="build failed"):
        builder.build(plan(build="false"), source=app, log_path=tmp_path / "b.log", progress=lambda _: None)
    assert [p.name for p in (tmp_path / "builds").iterdir() if not p.name.endswith(".lock")] == []
