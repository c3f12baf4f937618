"""`build --plan` shows the dependency cache key a deploy will use: one function computes both, checked on real
trees (a `pip install .` project, a requirements.txt project, a node project) against the daemon's releases.
Needs the package registries (pip and npm install for real)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.conftest import Stackblaze, write_project
from tests.tools import need

SPEC = """\
project: keys
services:
  - name: pkg
    root: pkg
    start: python -m worker
  - name: reqs
    root: reqs
    start: python worker.py
  - name: node
    root: node
    start: node worker.js
"""
WORKER_PY = "import time\nprint('up', flush=True)\ntime.sleep(1e6)\n"
FILES = {
    # no lockfile: `pip install .`, whose install step sees (and whose key covers) the whole source
    "pkg/pyproject.toml": '[project]\nname = "worker"\nversion = "0.1.0"\n\n[build-system]\n'
                          'requires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
    "pkg/worker.py": WORKER_PY,
    "reqs/requirements.txt": "six==1.16.0\n",
    "reqs/worker.py": "import six\n" + WORKER_PY,
    "node/package.json": json.dumps({"name": "node-worker", "version": "1.0.0", "private": True,
                                     "dependencies": {"is-number": "7.0.0"}}),
    "node/worker.js": "require('is-number');\nconsole.log('up');\nsetInterval(() => {}, 1e6);\n",
}


def plan_keys(sb: Stackblaze, app: Path) -> dict[str, str | None]:
    plans = sb.run("build", str(app), "--plan", "--json").json()["plans"]
    return {plan["service"]: plan["cache_key"] for plan in plans}


def deployed_keys(sb: Stackblaze) -> dict[str, str | None]:
    keys = {}
    for service in ("pkg", "reqs", "node"):
        releases = sb.run("releases", service, "--json").json()["releases"]
        keys[service] = releases[-1]["cache_key"]
    return keys


def test_the_plans_cache_key_is_the_one_the_deploy_used(sb: Stackblaze, tmp_path: Path) -> None:
    need("npm")
    app = write_project(tmp_path / "app", SPEC, FILES)
    subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"], cwd=app / "node",
                   check=True, capture_output=True, timeout=180)
    planned = plan_keys(sb, app)
    assert all(planned.values()), planned  # every service installs something
    sb.run("deploy", str(app), timeout=600)
    assert deployed_keys(sb) == planned

    # A code edit: `pip install .` needs a new layer, and the plan says so before the deploy does.
    (app / "pkg" / "worker.py").write_text(WORKER_PY + "# edited\n")
    (app / "reqs" / "worker.py").write_text("import six\n" + WORKER_PY + "# edited\n")
    edited = plan_keys(sb, app)
    assert edited["pkg"] != planned["pkg"] and edited["reqs"] == planned["reqs"]
    sb.run("deploy", str(app), timeout=600)
    assert deployed_keys(sb) == edited
