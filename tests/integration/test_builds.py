"""Real builds from the package registries: each worker runs and logs; caches skip the installer.

These install real packages (PyPI, npm), so they need the registries this machine reaches; CI installs
uv, pnpm and Go first (see .ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.tools import need

PY_WORKER = "import six, time\nprint('six', six.__version__, flush=True)\ntime.sleep(1e6)\n"
NODE_WORKER = ("const isNumber = require('is-number');\nconsole.log('is-number says', isNumber(5));\n"
               "setInterval(() => {}, 1e6);\n")


def spec(name: str, start: str | None = None, extra: str = "") -> str:
    lines = f"project: {name}\nservices:\n  - name: worker\n"
    if start:
        lines += f"    start: {start}\n"
    return lines + extra


def logs_contain(sb: Stackblaze, text: str) -> bool:
    return text in sb.run("logs", "worker", "-n", "50").out


def test_python_pip_app_runs_and_unchanged_redeploy_installs_nothing(sb: Stackblaze, tmp_path: Path) -> None:
    """pip into a venv; a second deploy of the same tree runs no installer; a changed
    requirements.txt installs once more; the build log says which."""
    app = write_project(tmp_path / "app", spec("pyapp", "python worker.py"),
                        {"requirements.txt": "six==1.16.0\n", "worker.py": PY_WORKER})
    sb.run("deploy", str(app), timeout=300)
    wait_for("the worker to log", lambda: logs_contain(sb, "six 1.16.0"))
    first = sb.run("logs", "worker", "--build").out
    assert "installing dependencies" in first

    again = sb.run("deploy", str(app), "--json", timeout=120).json()
    assert again["services"][0]["installed"] is False and again["services"][0]["new_release"] is False
    assert "dependencies unchanged" in sb.run("logs", "worker", "--build").out

    (app / "worker.py").write_text(PY_WORKER.replace("'six'", "'six version'"))
    edited = sb.run("deploy", str(app), "--json", timeout=120).json()["services"][0]
    assert (edited["installed"], edited["new_release"]) == (False, True)  # a code edit reinstalls nothing

    (app / "requirements.txt").write_text("six==1.17.0\n")
    changed = sb.run("deploy", str(app), "--json", timeout=300).json()["services"][0]
    assert changed["installed"] is True
    assert "installing dependencies" in sb.run("logs", "worker", "--build").out
    wait_for("the new version to run", lambda: logs_contain(sb, "six version 1.17.0"))
    releases = sb.run("releases", "worker", "--json").json()
    assert [r["number"] for r in releases["releases"]] == [1, 2, 3] and releases["current"] == 3
    assert releases["releases"][0]["resolved_version"]


def test_broken_requirements_fail_the_deploy_and_keep_the_old_release(sb: Stackblaze, tmp_path: Path) -> None:
    """The installer's error lines are shown; the running replica is untouched (same pid, same release)."""
    app = write_project(tmp_path / "app", spec("broken", "python worker.py"),
                        {"requirements.txt": "six==1.16.0\n", "worker.py": PY_WORKER})
    sb.run("deploy", str(app), timeout=300)
    before = wait_for("running", lambda: (r := sb.replicas("worker")[0])["state"] == "running" and r)
    (app / "requirements.txt").write_text("six==1.16.0\nstackblaze-no-such-package-zz==1.0\n")
    failed = sb.run("deploy", str(app), check=False, timeout=300)
    assert failed.code != 0
    assert "install failed" in failed.err
    assert "stackblaze-no-such-package-zz" in failed.err  # pip's own words, from its last lines
    after = sb.replicas("worker")[0]
    assert (after["pid"], after["release"], after["state"]) == (before["pid"], before["release"], "running")
    listing = sb.run("releases", "worker", "--json").json()
    # the failed attempt is listed as such, and release 1 is still the one running
    assert [(r["number"], r.get("status", "ok")) for r in listing["releases"]] == [(1, "ok"), (2, "build-failed")]
    assert listing["current"] == 1


def test_python_uv_app_runs(sb: Stackblaze, tmp_path: Path) -> None:
    need("uv")
    app = write_project(tmp_path / "app", spec("uvapp", "python worker.py"), {
        "pyproject.toml": '[project]\nname = "uvapp"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
                          'dependencies = ["six==1.16.0"]\n',
        "worker.py": PY_WORKER,
    })
    subprocess.run(["uv", "lock"], cwd=app, check=True, capture_output=True, timeout=180)
    result = sb.run("deploy", str(app), "--json", timeout=300).json()["services"][0]
    assert result["runtime"] == "python"
    wait_for("the worker to log", lambda: logs_contain(sb, "six 1.16.0"))
    assert "uv" in sb.run("logs", "worker", "--build").out


def test_node_npm_app_runs(sb: Stackblaze, tmp_path: Path) -> None:
    need("npm")
    app = write_project(tmp_path / "app", spec("npmapp", "node worker.js"), {
        "package.json": json.dumps({"name": "npmapp", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}),
        "worker.js": NODE_WORKER,
    })
    subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"], cwd=app, check=True,
                   capture_output=True, timeout=180)
    result = sb.run("deploy", str(app), "--json", timeout=300).json()["services"][0]
    assert result["runtime"] == "node"
    wait_for("the worker to log", lambda: logs_contain(sb, "is-number says true"))
    assert "npm ci" in sb.run("logs", "worker", "--build").out
    again = sb.run("deploy", str(app), "--json", timeout=120).json()["services"][0]
    assert again["installed"] is False


def test_node_pnpm_app_runs(sb: Stackblaze, tmp_path: Path) -> None:
    need("pnpm")
    app = write_project(tmp_path / "app", spec("pnpmapp", "node worker.js"), {
        "package.json": json.dumps({"name": "pnpmapp", "version": "1.0.0",
                                    "dependencies": {"is-number": "7.0.0"}}),
        "worker.js": NODE_WORKER,
    })
    subprocess.run(["pnpm", "install", "--lockfile-only"], cwd=app, check=True, capture_output=True, timeout=180)
    sb.run("deploy", str(app), timeout=300)
    wait_for("the worker to log", lambda: logs_contain(sb, "is-number says true"))
    assert "pnpm" in sb.run("logs", "worker", "--build").out


def test_go_app_builds_and_runs(sb: Stackblaze, tmp_path: Path) -> None:
    need("go")
    app = write_project(tmp_path / "app", spec("goapp"), {
        "go.mod": "module example.com/goapp\n\ngo 1.19\n",
        "main.go": 'package main\n\nimport (\n\t"fmt"\n\t"time"\n)\n\nfunc main() {\n'
                   '\tfmt.Println("go worker up")\n\tfor {\n\t\ttime.Sleep(time.Hour)\n\t}\n}\n',
    })
    sb.run("deploy", str(app), timeout=300)
    wait_for("the worker to log", lambda: logs_contain(sb, "go worker up"))


def test_two_services_from_one_root_build_once(sb: Stackblaze, tmp_path: Path) -> None:
    """Same root, same build: one build tree, two services with their own start commands."""
    app = write_project(tmp_path / "app", """
project: mono
services:
  - name: emails
    start: python worker.py emails
  - name: reports
    start: python worker.py reports
""", {"requirements.txt": "six==1.16.0\n",
      "worker.py": "import sys, time, six\nprint('serving', sys.argv[1], flush=True)\ntime.sleep(1e6)\n"})
    out = sb.run("deploy", str(app), timeout=300)
    assert out.err.count("installing dependencies") == 1
    wait_for("both services log", lambda: all(
        f"serving {name}" in sb.run("logs", name, "-n", "5").out for name in ("emails", "reports")))
    paths = {sb.run("releases", name, "--json").json()["releases"][0]["path"] for name in ("emails", "reports")}
    assert len(paths) == 1


def test_old_releases_build_trees_and_unused_dependency_layers_are_collected(sb: Stackblaze, tmp_path: Path) -> None:
    """5 releases are kept per service (plus the running one); build trees no kept release uses go; a
    dependency layer no kept release uses goes once it is an hour old (a fresh one may be another
    deploy's, still building)."""
    app = write_project(tmp_path / "app", spec("gc", "python worker.py"),
                        {"requirements.txt": "# v1\n", "worker.py": "import time\ntime.sleep(1e6)\n"})
    sb.run("deploy", str(app), timeout=300)
    (app / "requirements.txt").write_text("# v2\n")
    sb.run("deploy", str(app), timeout=300)
    layers = sb.home / "cache" / "deps"
    first_layer, second_layer = (
        Path(r["deps_dir"]) for r in sb.run("releases", "worker", "--json").json()["releases"])
    assert first_layer != second_layer
    for edit in range(5):
        (app / "worker.py").write_text(f"import time\n# edit {edit}\ntime.sleep(1e6)\n")
        sb.run("deploy", str(app), timeout=120)
    releases = sb.run("releases", "worker", "--json").json()
    assert [r["number"] for r in releases["releases"]] == [3, 4, 5, 6, 7] and releases["current"] == 7
    trees = [p for p in (sb.home / "releases" / "gc" / "builds").iterdir() if p.is_dir() and p.name[0] != "."]
    assert len(trees) == 5
    assert first_layer.exists()  # unused, but younger than an hour
    old = time.time() - 2 * 3600
    os.utime(first_layer / ".complete", (old, old))
    (app / "worker.py").write_text("import time\n# one more\ntime.sleep(1e6)\n")
    sb.run("deploy", str(app), timeout=120)
    assert not first_layer.exists() and second_layer.exists()
    assert sorted(p.name for p in layers.iterdir() if p.is_dir()) == [second_layer.name]
