"""Go without go.mod: GOPATH mode at the import path vendor metadata, an import comment or the start command
gives; Go files with nothing to build them by say what to add."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .trees import plan_error, plan_for, write

MAIN = "package main\n\nfunc main() {}\n"


@pytest.mark.parametrize(("files", "tool", "path", "source"), [
    ({"vendor/vendor.json": json.dumps({"rootPath": "github.com/acme/a", "package": []})},
     "govendor", "github.com/acme/a", "vendor/vendor.json rootPath"),
    ({"Godeps/Godeps.json": json.dumps({"ImportPath": "github.com/acme/b", "GoVersion": "go1.8"})},
     "godep", "github.com/acme/b", "Godeps/Godeps.json ImportPath"),
    ({"Gopkg.toml": '[metadata.heroku]\n  root-package = "github.com/acme/c"\n', "Gopkg.lock": ""},
     "dep", "github.com/acme/c", "Gopkg.toml root-package"),
    ({"Gopkg.lock": "", "main.go": 'package main // import "github.com/acme/d"\n\nfunc main() {}\n'},
     "dep", "github.com/acme/d", "the import comment in main.go"),
    ({"vendor/github.com/x/y/y.go": "package y\n"}, "vendor", "myworker", "the start command: myworker"),
])
def test_the_import_path_places_the_tree_in_a_gopath(tmp_path: Path, files: dict[str, str], tool: str, path: str,
                                                    source: str) -> None:
    write(tmp_path, {"main.go": MAIN, **files})
    plan = plan_for(tmp_path, start="myworker")
    assert (plan.runtime, plan.package_manager, plan.resolved_version) == ("go", tool, "1.22.3")
    assert plan.install is not None and plan.install_needs_source
    assert f'cd "$DEPS/gopath/src/{path}"' in plan.install
    assert 'GO111MODULE=off GOFLAGS= GOPATH="$DEPS/gopath:' in plan.install
    assert 'GOBIN="$DEPS/bin" /opt/go/1.22.3/bin/go install -v ./...' in plan.install
    assert f"(the import path from {source})" in plan.install
    assert plan.env["PATH"] == "$DEPS/bin:$PATH"
    assert "main.go" in plan.lockfiles  # the install sees the code: an edit rebuilds


def test_go_files_alone_need_a_go_mod(tmp_path: Path) -> None:
    write(tmp_path, {"main.go": MAIN})
    assert plan_error(tmp_path, start="myworker") == (
        "go.mod: the project root has Go files but no go.mod and no vendored dependencies (add a go.mod: "
        "go mod init <import path>, or vendor metadata: vendor/vendor.json, Godeps/Godeps.json or Gopkg.toml)")


def test_no_import_path_found_says_where_to_put_one(tmp_path: Path) -> None:
    write(tmp_path, {"main.go": MAIN, "Gopkg.lock": ""})
    message = plan_error(tmp_path, start="./bin/run --fast")
    assert message.startswith("Gopkg.lock: no import path for GOPATH mode (set rootPath in vendor/vendor.json")
    assert "\n" not in message


def test_without_a_start_command_the_root_packages_command_is_the_default(tmp_path: Path) -> None:
    write(tmp_path, {"main.go": MAIN, "vendor/vendor.json": json.dumps({"rootPath": "github.com/acme/mailer"})})
    plan = plan_for(tmp_path, start=".stackblaze/bin/worker", start_source="go build")
    assert plan.build == 'mkdir -p .stackblaze/bin && cp "$DEPS/bin/"mailer .stackblaze/bin/worker'
