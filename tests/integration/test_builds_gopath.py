"""Real builds of Go code from before modules: vendored dependencies, no go.mod, GOPATH mode with the
machine's Go; the commands `go install` makes are on the replicas' PATH, so a Procfile names them."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Stackblaze, wait_for
from tests.tools import need

MAIN = """\
package main // import "github.com/acme/myworker"

import (
\t"fmt"
\t"time"

\t"github.com/acme/myworker/jobs"
\t"github.com/acme/queue"
)

func main() {
\tfmt.Println(queue.Banner("gopath worker"), jobs.Count())
\tfor {
\t\ttime.Sleep(time.Hour)
\t}
}
"""
FILES = {
    "main.go": MAIN,
    # A package of the app itself, imported by its import path: resolves only under $GOPATH/src.
    "jobs/jobs.go": "package jobs\n\nfunc Count() int { return 500 }\n",
    "vendor/github.com/acme/queue/queue.go":
        'package queue\n\nfunc Banner(name string) string { return name + " consuming with acme/queue" }\n',
    "vendor/vendor.json": """{
  "comment": "",
  "ignore": "test",
  "package": [{"checksumSHA1": "x", "path": "github.com/acme/queue", "revision": "0123456789abcdef"}],
  "rootPath": "github.com/acme/myworker"
}
""",
    "Procfile": "worker: myworker\n",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_govendor_app_deploys_from_its_procfile(sb: Stackblaze, tmp_path: Path) -> None:
    """No go.mod, no stackblaze.yaml: vendor.json's rootPath places the tree in a GOPATH, the vendored
    package and the app's own package resolve, and `worker: myworker` runs the installed command."""
    need("go")
    app = write(tmp_path / "myworker", FILES)
    out = sb.run("deploy", str(app), timeout=600)
    wait_for("the worker to log",
             lambda: "gopath worker consuming with acme/queue 500" in sb.run("logs", "worker", "-n", "20").out)
    build_log = sb.run("logs", "worker", "--build").out
    assert "with govendor" in build_log
    assert "GO111MODULE=off" in build_log and "==> installed on the PATH: myworker" in build_log
    assert ("==> no go.mod: GOPATH mode (GO111MODULE=off) at $GOPATH/src/github.com/acme/myworker (the import "
            "path from vendor/vendor.json rootPath)") in build_log
    assert "myworker" in out.err  # the deploy shows the build as it runs


def test_godep_app_without_a_start_command_runs_its_root_command(sb: Stackblaze, tmp_path: Path) -> None:
    """Godeps.json's ImportPath, a stackblaze.yaml with no start: the default command is the root package's."""
    need("go")
    files = {name: text for name, text in FILES.items() if name not in ("vendor/vendor.json", "Procfile")}
    files["Godeps/Godeps.json"] = '{"ImportPath": "github.com/acme/myworker", "GoVersion": "go1.9", "Deps": []}\n'
    files["stackblaze.yaml"] = "project: godep\nservices:\n  - name: mailer\n"
    app = write(tmp_path / "app", files)
    sb.run("deploy", str(app), timeout=600)
    wait_for("the worker to log",
             lambda: "gopath worker consuming with acme/queue 500" in sb.run("logs", "mailer", "-n", "20").out)
    assert "with godep" in sb.run("logs", "mailer", "--build").out


def test_go_files_without_go_mod_or_vendor_metadata_say_what_they_need(sb: Stackblaze, tmp_path: Path) -> None:
    need("go")
    app = write(tmp_path / "bare", {"main.go": "package main\n\nfunc main() {}\n", "Procfile": "worker: bare\n"})
    failed = sb.run("deploy", str(app), check=False, timeout=120)
    assert failed.code != 0
    assert ("go.mod: the project root has Go files but no go.mod and no vendored dependencies (add a go.mod: "
            "go mod init <import path>, or vendor metadata") in failed.err
    assert "Traceback" not in failed.err
