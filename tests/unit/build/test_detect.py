"""detect_plan: the runtime order, Go, Ruby, Procfile-only trees, spec overrides and the cache key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackblaze.build.builder import plan_cache_key
from stackblaze.build.toolchains import FakeToolchains

from .trees import plan_error, plan_for, write

GO = "/opt/go/1.22.3/bin/go"


def test_go_mod_downloads_modules_into_deps_and_builds_a_binary(tmp_path: Path) -> None:
    write(tmp_path, {"go.mod": "module example.com/w\n\ngo 1.21\n", "go.sum": "", "main.go": ""})
    plan = plan_for(tmp_path, start=".stackblaze/bin/worker")
    assert (plan.runtime, plan.package_manager, plan.version, plan.resolved_version) == ("go", "go", "1.21", "1.22.3")
    assert plan.install == f'GOMODCACHE="$DEPS/gomod" {GO} mod download'
    assert plan.build == f"{GO} build -o .stackblaze/bin/worker ."
    assert plan.lockfiles == ("go.mod", "go.sum")
    assert plan.env == {"GOTOOLCHAIN": "local", "GOMODCACHE": "$DEPS/gomod"}


def test_go_without_dependencies_or_with_vendor_installs_nothing_and_builds_cmd(tmp_path: Path) -> None:
    write(tmp_path, {"go.mod": "module w\n", "cmd/worker/main.go": "", "cmd/tool/main.go": ""})
    plan = plan_for(tmp_path, start=".stackblaze/bin/worker")
    assert (plan.install, plan.lockfiles) == (None, ())
    assert plan.build == f"{GO} build -o .stackblaze/bin/worker ./cmd/worker"


def test_go_toolchain_line_pins_more_than_the_go_line(tmp_path: Path) -> None:
    write(tmp_path, {"go.mod": "module w\ngo 1.21\ntoolchain go1.23.1\n"})
    assert plan_error(tmp_path, start="w") == (
        "go.mod:3: go 1.23.1 is not installed here (installed: 1.22.3; install it or change go.mod)")


def test_gemfile_is_bundle_install_into_deps(tmp_path: Path) -> None:
    write(tmp_path, {"Gemfile": "source 'https://rubygems.org'\nruby '~> 3.2'\ngemspec\n", "Gemfile.lock": "",
                     "w.gemspec": ""})
    plan = plan_for(tmp_path, start="bundle exec ruby worker.rb")
    assert (plan.runtime, plan.package_manager, plan.tool_version) == ("ruby", "bundler", "2.4.10")
    assert (plan.version, plan.version_source, plan.resolved_version) == ("~> 3.2", "Gemfile", "3.2.2")
    assert plan.install == "BUNDLE_FROZEN=true bundle install"
    assert plan.env == {"BUNDLE_PATH": "$DEPS/bundle", "BUNDLE_WITHOUT": "development:test"}
    assert plan.lockfiles == ("Gemfile", "Gemfile.lock", "w.gemspec")


def test_ruby_version_file_and_a_ruby_the_machine_lacks(tmp_path: Path) -> None:
    write(tmp_path, {"Gemfile": "", ".ruby-version": "ruby-3.3.0\n"})
    assert plan_error(tmp_path, start="ruby w.rb") == (
        ".ruby-version:1: ruby 3.3.0 is not installed here (installed: 3.2.2; install it or change .ruby-version)")
    no_ruby = FakeToolchains(python=["3.11.7"])
    (tmp_path / ".ruby-version").unlink()
    assert plan_error(tmp_path, start="ruby w.rb", toolchains=no_ruby) == (
        "Gemfile: ruby is needed but not installed here (install it)")


def test_a_procfile_only_tree_runs_its_command_with_nothing_to_build(tmp_path: Path) -> None:
    write(tmp_path, {"Procfile": "worker: ./bin/work\n"})
    plan = plan_for(tmp_path, start="./bin/work", start_source="Procfile")
    assert (plan.runtime, plan.install, plan.build, plan.resolved_version) == ("procfile", None, None, None)
    assert (plan.start, plan.start_source) == ("./bin/work", "Procfile")
    assert plan_cache_key(tmp_path, plan) is None


@pytest.mark.parametrize(("files", "chosen", "warning"), [
    ({"requirements.txt": "", "package.json": "{}"}, "python",
     "the project root matches python (requirements.txt) and node (package.json); building it as python, the first "
     "in detection order (set runtime: node to build it otherwise)"),
    ({"go.mod": "module w\n", "Gemfile": "", "pyproject.toml": "", "package.json": "{}"}, "go",
     "the project root matches go (go.mod), ruby (Gemfile), python (pyproject.toml) and node (package.json); "
     "building it as go, the first in detection order (set runtime: ruby or runtime: python or runtime: node to "
     "build it otherwise)"),
])
def test_a_tree_matching_several_runtimes_is_warned(tmp_path: Path, files: dict[str, str], chosen: str,
                                                    warning: str) -> None:
    plan = plan_for(write(tmp_path, files), start="x")
    assert plan.runtime == chosen
    assert plan.warnings == (warning,)


def test_runtime_in_the_spec_overrides_detection_without_a_warning(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "", "package.json": "{}", "package-lock.json": ""})
    plan = plan_for(tmp_path, start="node w.js", runtime="node")
    assert (plan.runtime, plan.package_manager, plan.warnings) == ("node", "npm", ())


def test_runtime_in_the_spec_needs_its_files(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": ""})
    assert plan_error(tmp_path, start="node w.js", runtime="node") == (
        "services.worker.runtime: node needs package.json in the project root (add it, or change runtime:)")


def test_build_in_the_spec_replaces_the_detected_build_and_keeps_the_install(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": json.dumps({"scripts": {"build": "tsc"}}), "package-lock.json": ""})
    plan = plan_for(tmp_path, start="node w.js", build="npm run compile")
    assert plan.build == "npm run compile" and plan.install is not None and plan.warnings == ()


def test_a_build_that_installs_again_is_warned(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": "{}", "package-lock.json": ""})
    plan = plan_for(tmp_path, start="node w.js", build="npm ci && npm run build")
    assert len(plan.warnings) == 1
    assert plan.warnings[0].startswith("build: 'npm ci && npm run build' installs the dependencies again")


def test_start_warnings_and_the_scripts_start_note_reach_the_plan(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": json.dumps({"scripts": {"start": "node w.js"}})})
    wrapped = plan_for(tmp_path, start="npm start")
    assert len(wrapped.warnings) == 1 and wrapped.warnings[0].startswith("start: npm start puts npm and a shell")
    direct = plan_for(tmp_path, start="node w.js", start_source="package.json scripts.start")
    assert direct.warnings == ()
    assert direct.notes[-1] == ("start: package.json scripts.start runs directly as 'node w.js', not through npm "
                                "start, so that the worker itself gets the stop signal")


def test_the_cache_key_follows_the_lockfiles_and_the_interpreter_not_the_code(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "redis==5.0\n", "worker.py": "v1"})
    key = plan_cache_key(tmp_path, plan_for(tmp_path))
    assert key is not None and len(key) == 20
    write(tmp_path, {"worker.py": "v2"})
    assert plan_cache_key(tmp_path, plan_for(tmp_path)) == key
    write(tmp_path, {".python-version": "3.12"})
    assert plan_cache_key(tmp_path, plan_for(tmp_path)) != key
    (tmp_path / ".python-version").unlink()
    write(tmp_path, {"requirements.txt": "redis==5.1\n"})
    assert plan_cache_key(tmp_path, plan_for(tmp_path)) != key


def test_when_install_needs_the_source_the_cache_key_follows_the_code(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[project]\n", "w.py": "v1"})
    key = plan_cache_key(tmp_path, plan_for(tmp_path))
    write(tmp_path, {"w.py": "v2"})
    assert plan_cache_key(tmp_path, plan_for(tmp_path)) != key


def test_the_plan_is_plain_data(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"requirements.txt": ""}))
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["runtime"] == "python" and data["platform"] == "linux-x86_64" and data["copy_root"] == "."
