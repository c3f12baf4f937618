"""Start commands that would keep SIGTERM from the worker get a warning saying why and what to write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackblaze.build.signals import start_warnings

from .trees import write


@pytest.mark.parametrize("start", [
    "python worker.py", "node dist/worker.js", "exec python worker.py", "cd app && exec python worker.py",
    "python worker.py --queue=email 2>&1", "celery -A app worker --hostname=$(hostname)",
    "sh -c 'exec python worker.py'", "bash -lc 'cd app && exec node w.js'", "python -c 'import a; a.run()'",
    "env QUEUE=x python worker.py", "bundle exec sidekiq", "./bin/worker",
])
def test_commands_that_pass_the_signal_on_get_no_warning(tmp_path: Path, start: str) -> None:
    assert start_warnings(start, tmp_path) == []


@pytest.mark.parametrize("start", ["npm start", "npm run worker", "yarn start", "yarn worker", "pnpm run worker",
                                   "NODE_ENV=production npm start"])
def test_package_manager_wrappers_are_warned_with_the_script_to_write(tmp_path: Path, start: str) -> None:
    write(tmp_path, {"package.json": json.dumps({"scripts": {"start": "node w.js", "worker": "node q.js"}})})
    [warning] = start_warnings(start, tmp_path)
    assert "gets no SIGTERM" in warning
    assert warning.endswith("(write start: node w.js)" if "start" in start.split()[-1] else "(write start: node q.js)")


def test_npx_is_a_wrapper_too(tmp_path: Path) -> None:
    [warning] = start_warnings("npx -y tsx worker.ts", tmp_path)
    assert warning.startswith("start: npx -y tsx worker.ts puts npx and a shell")
    assert warning.endswith("(write start: tsx worker.ts)")


def test_a_wrapper_without_package_json_suggests_the_command(tmp_path: Path) -> None:
    assert start_warnings("npm start", tmp_path) == [
        "start: npm start puts npm and a shell between the stop signal and your worker, which then gets no SIGTERM "
        "and is killed at the end of its grace period (write the script's command itself, e.g. start: node "
        "worker.js)"]


def test_sh_c_without_exec_is_warned_with_the_fixed_command(tmp_path: Path) -> None:
    assert start_warnings("sh -c 'python worker.py'", tmp_path) == [
        "start: sh -c stays the parent of the command it runs, so SIGTERM stops the shell and not your worker "
        "(put exec before the command that runs the worker: sh -c 'exec python worker.py')"]
    [warning] = start_warnings("bash -c 'cd app; python w.py'", tmp_path)
    assert warning.endswith("bash -c '... && exec your-worker')")


def test_several_commands_without_exec_are_warned(tmp_path: Path) -> None:
    assert start_warnings("cd app && python worker.py", tmp_path) == [
        "start: is several shell commands, so /bin/sh -c stays the worker's parent and takes SIGTERM itself (put "
        "exec before the command that runs the worker, e.g. cd app && exec python worker.py)"]
    assert start_warnings("python migrate.py; python worker.py", tmp_path) != []


@pytest.mark.parametrize(("name", "script", "start"), [
    ("start.sh", "#!/bin/sh\nset -e\npython migrate.py\npython worker.py\n", "./start.sh"),
    ("bin/run", "#!/usr/bin/env bash\n# exec python w.py would be right\npython w.py\n", "bin/run"),
    ("run.sh", "python w.py\n", "bash run.sh"),
    ("run.sh", "python w.py\n", "sh -e run.sh"),
])
def test_a_shell_script_that_does_not_exec_is_warned(tmp_path: Path, name: str, script: str, start: str) -> None:
    write(tmp_path, {name: script})
    assert start_warnings(start, tmp_path) == [
        f"start: {start.split()[-1]} runs your worker as a child of the shell, which does not pass SIGTERM on "
        '(end the script with exec, e.g. exec python worker.py "$@")']


@pytest.mark.parametrize("script", [
    "#!/bin/sh\nset -e\npython migrate.py\nexec python worker.py\n",
    "#!/bin/bash\nif [ -n \"$X\" ]; then exec python a.py; fi\nexec python b.py \"$@\"\n",
])
def test_a_shell_script_that_execs_is_fine(tmp_path: Path, script: str) -> None:
    write(tmp_path, {"start.sh": script})
    assert start_warnings("./start.sh", tmp_path) == []


def test_a_script_in_another_language_is_not_a_shell_script(tmp_path: Path) -> None:
    write(tmp_path, {"bin/worker": "#!/usr/bin/env python3\nimport time\n"})
    assert start_warnings("bin/worker", tmp_path) == []


def test_unbalanced_quotes_are_left_to_the_shell(tmp_path: Path) -> None:
    assert start_warnings("python 'w.py", tmp_path) == []
