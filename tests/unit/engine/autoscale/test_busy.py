"""Busy data for a scale-down: a worker's pid is matched to the replica whose process is it or its ancestor
(real processes, real /proc), and a busy_probe's exit code says busy (0), idle (1) or unknown (anything else,
or no answer in time). RQ's worker hashes are read against a real redis-server in
tests/integration/test_autoscale.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

from stackblaze.engine.autoscale.busy import owner_of, probe_busy


def test_a_worker_pid_belongs_to_the_replica_it_descends_from() -> None:
    # a shell (the "replica") whose child python (the "worker" that registered its own pid) sleeps
    shell = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c 'import time; time.sleep(30)'; true"])
    other = subprocess.Popen(["sleep", "30"])  # another replica's process
    worker = None
    try:
        for _ in range(500):
            found = subprocess.run(["pgrep", "-P", str(shell.pid)], capture_output=True, text=True).stdout.split()
            if found:
                worker = int(found[0])
                break
            time.sleep(0.01)
        assert worker is not None
        assert owner_of(worker, {1: other.pid, 2: shell.pid}) == 2
        assert owner_of(shell.pid, {2: shell.pid}) == 2
        assert owner_of(worker, {1: other.pid}) is None
        assert owner_of(10**7, {1: shell.pid}) is None  # no such process
    finally:
        for pid in (worker, shell.pid, other.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        shell.wait()
        other.wait()


def test_a_busy_probe_answers_busy_idle_or_unknown() -> None:
    async def probe(command: str, timeout: float = 5.0) -> tuple[bool | None, str]:
        answer = await probe_busy(command, env={"PATH": os.defpath, "STACKBLAZE_REPLICA": "3"}, cwd="/", user=None,
                                  timeout=timeout)
        return answer.busy, answer.source

    assert asyncio.run(probe('test "$STACKBLAZE_REPLICA" = 3')) == (True, "busy_probe")
    assert asyncio.run(probe("exit 1")) == (False, "busy_probe")
    assert asyncio.run(probe("exit 2")) == (None, "unknown")
    assert asyncio.run(probe("sleep 5", timeout=0.2)) == (None, "unknown")


def test_a_busy_probe_names_the_jobs_it_prints_one_a_line() -> None:
    def probe(command: str) -> tuple[bool | None, int | None, tuple[str, ...]]:
        answer = asyncio.run(probe_busy(command, env={"PATH": os.defpath}, cwd="/", user=None))
        return answer.busy, answer.jobs, answer.ids

    assert probe("printf 'job-7\\n\\njob-8\\njob-7\\n'") == (True, 2, ("job-7", "job-8"))
    assert probe("true") == (True, None, ())  # busy, how many unknown
    assert probe("echo job-7; exit 1") == (False, 0, ())  # idle: what it printed names nothing
