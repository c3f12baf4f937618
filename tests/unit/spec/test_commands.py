"""Start commands become argvs that let the stop signal reach the worker, the same on both engines: what the
local engine's supervisor asks the runner to spawn, and an image's exec-form CMD, are one argv.
(The local side runs the real Supervisor against the FakeRunner shipped beside it: no processes.)"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stackblaze.build.image import render_containerfile
from stackblaze.build.plan import BuildPlan
from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.clock import FakeClock, settle
from stackblaze.engine.local.fake_runner import FakeRunner
from stackblaze.engine.local.slots import Desired
from stackblaze.engine.local.supervisor import Supervisor
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




class NoStatus:
    def replica_statuses(self, project: str) -> dict[tuple[str, int], dict[str, Any]]:
        return {}

    def save_replica_status(self, project: str, service: str, replica: int, status: dict[str, Any]) -> None:
        pass

    def delete_replica_status(self, project: str, service: str, replica: int) -> None:
        pass


def spawned_by_the_local_engine(starts: list[str]) -> dict[str, list[str]]:
    """The argv the supervisor asks the runner to spawn for each start command (one service each)."""
    desired = {f"s{i}": Desired(project="p", service=f"s{i}", replicas=1, release=1, cwd="/srv", start=start, env={},
                                stop_signal=15, shutdown_grace=30.0, strategy="rolling", config="v1")
               for i, start in enumerate(starts)}

    async def run() -> dict[str, list[str]]:
        clock = FakeClock()
        runner = FakeRunner(clock)
        supervisor = Supervisor(runner=runner, store=NoStatus(), policy=BackoffPolicy(), logs_dir=Path("/nonexistent"),
                                desired=lambda project, service: desired.get(service),
                                services=lambda: [("p", name) for name in desired], record_event=lambda **_: None,
                                clock=clock)
        await supervisor.start()
        await settle()
        return {desired[i.meta["service"]].start: i.argv for i in runner.instances.values()}

    return asyncio.run(run())


def image_cmd(start: str) -> list[str]:
    text = render_containerfile(replace(PLAN, start=start), base="b")
    cmd = next(line for line in text.splitlines() if line.startswith("CMD "))
    return list(json.loads(cmd.removeprefix("CMD ")))


@pytest.mark.parametrize(("start", "argv"), TABLE, ids=[start for start, _ in TABLE])
def test_start_argv(start: str, argv: list[str]) -> None:
    assert start_argv(start) == argv


def test_the_local_engine_and_the_image_run_the_same_argv() -> None:
    local = spawned_by_the_local_engine([start for start, _ in TABLE])
    assert local == {start: argv for start, argv in TABLE}
    assert {start: image_cmd(start) for start, _ in TABLE} == local
