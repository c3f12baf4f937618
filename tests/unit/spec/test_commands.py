"""Start commands become argvs that let the stop signal reach the worker, the same on both engines: the local
engine spawns `start_argv(start)`, and an image's exec-form CMD must be that same argv."""

from __future__ import annotations

import json

import pytest

from stackblaze.build.image import render_containerfile
from stackblaze.build.plan import BuildPlan
from stackblaze.spec.commands import start_argv

SH = ["/bin/sh", "-c"]
TABLE = [
    # no shell syntax: exec'd directly, quotes split as sh splits them
    ("python worker.py --queue emails", ["python", "worker.py", "--queue", "emails"]),
    ("celery -A app worker --concurrency=4", ["celery", "-A", "app", "worker", "--concurrency=4"]),
    ("node 'dist/my worker.js'", ["node", "dist/my worker.js"]),
    ('python w.py --name "a b" --pct 50%', ["python", "w.py", "--name", "a b", "--pct", "50%"]),
    ("  python w.py  ", ["python", "w.py"]),
    # one command with shell syntax: the shell execs it, so the worker is the main process
    ("python w.py --queue=$QUEUE", [*SH, "exec python w.py --queue=$QUEUE"]),
    ("python worker.py > /dev/stderr", [*SH, "exec python worker.py > /dev/stderr"]),
    ("python w.py --files *.txt", [*SH, "exec python w.py --files *.txt"]),
    ("python w.py --home ~/data", [*SH, "exec python w.py --home ~/data"]),
    ("python w.py 'unbalanced", [*SH, "exec python w.py 'unbalanced"]),
    ("python w.py \\\n --verbose", [*SH, "python w.py \\\n --verbose"]),
    # several commands or a leading assignment: a plain shell (and a build-time warning, build/signals.py)
    ("FOO=1 python worker.py", [*SH, "FOO=1 python worker.py"]),
    ("./migrate && ./worker", [*SH, "./migrate && ./worker"]),
    ("python w.py | tee out", [*SH, "python w.py | tee out"]),
    ("cd app; exec python w.py", [*SH, "cd app; exec python w.py"]),
]

PLAN = BuildPlan(
    service="worker", root=".", runtime="python", version=None, version_source=None, resolved_version=None,
    package_manager=None, tool_version=None, install=None, build=None, start="", lockfiles=(), env={},
)


@pytest.mark.parametrize(("start", "argv"), TABLE, ids=[start for start, _ in TABLE])
def test_the_local_engine_and_the_image_run_the_same_argv(start: str, argv: list[str]) -> None:
    local = start_argv(start)  # what engine/local/supervisor.py spawns
    cmd = next(line for line in render_containerfile(PLAN.__class__(**{**PLAN.__dict__, "start": start}),
                                                     base="b").splitlines() if line.startswith("CMD "))
    assert local == argv
    assert json.loads(cmd.removeprefix("CMD ")) == local
