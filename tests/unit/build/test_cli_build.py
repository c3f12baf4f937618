"""`stackblaze build --plan`: the real CLI in a subprocess, on fixture trees, with no daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .trees import write


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKBLAZE_HOME": str(home / "home")}  # no daemon is started or needed
    return subprocess.run([sys.executable, "-m", "stackblaze.cli", "build", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_plan_json_for_a_python_service_and_a_procfile_service(tmp_path: Path) -> None:
    project = write(tmp_path / "acme", {
        "stackblaze.yaml": """\
            project: acme
            services:
              - name: worker
                root: worker
                start: python worker.py
              - name: beat
                root: beat
            """,
        "worker/requirements.txt": "redis==5.0\n", "worker/worker.py": "",
        "beat/Procfile": "beat: ./beat.sh\n", "beat/beat.sh": "#!/bin/sh\nsleep 1\n",
    })
    done = run(str(project), "--plan", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["project"] == "acme"
    worker, beat = result["plans"]
    assert (worker["service"], worker["runtime"], worker["package_manager"]) == ("worker", "python", "pip")
    assert worker["resolved_version"] and worker["lockfiles"] == ["requirements.txt"]
    assert worker["install"].endswith('-m venv "$DEPS/venv" && "$DEPS/venv/bin/pip" install '
                                      "--disable-pip-version-check --no-input -r requirements.txt")
    assert len(worker["cache_key"]) == 20
    assert (beat["runtime"], beat["start"], beat["start_source"], beat["cache_key"]) == (
        "procfile", "./beat.sh", "Procfile", None)
    assert beat["warnings"] == ["start: ./beat.sh runs your worker as a child of the shell, which does not pass "
                                'SIGTERM on (end the script with exec, e.g. exec python worker.py "$@")']
    assert not (tmp_path / "home").exists()  # nothing ran, nothing was written


def test_plan_prints_a_section_per_service(tmp_path: Path) -> None:
    project = write(tmp_path / "app", {"Procfile": "worker: python w.py\n", "requirements.txt": ""})
    done = run(str(project), "--plan", home=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "worker"
    assert any(line.split() == ["runtime", "python"] for line in lines)
    assert any(line.split()[:2] == ["cache", "key"] for line in lines)


def test_a_version_the_machine_lacks_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    project = write(tmp_path / "app", {"Procfile": "worker: python w.py\n", "requirements.txt": "",
                                       ".python-version": "2.1\n"})
    done = run(str(project), "--plan", home=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: .python-version:1: python 2.1 is not installed here (installed: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_without_plan_it_says_what_is_needed(tmp_path: Path) -> None:
    project = write(tmp_path / "app", {"Procfile": "worker: python w.py\n"})
    done = run(str(project), home=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == ("error: build: say what to do: --plan prints each service's build plan, "
                                   "--image builds images")
