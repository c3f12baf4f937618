"""A spawn that fails says why: the runner's error reply carries the errno name and a plain-words reason
(and RunnerClient raises SpawnFailed with both), instead of everything reading "not executable".

Real runners, real execve failures: a missing command, a file without the x bit, a file that is not a
program, an environment too big for execve, a NUL byte, and a runner that ran out of file descriptors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stackblaze.engine.local.runner_client import RunnerClient, SpawnFailed
from tests.reliability.conftest import RunnerConnection, runner_socket


def failure(runner: RunnerConnection, key: str, argv: list[str], **fields: Any) -> dict[str, Any]:
    reply = runner.spawn(key, argv, **fields)
    assert reply["ok"] is False, reply
    log = (runner.home / "logs" / f"{key}.log").read_text()
    assert f"({reply['errno']})" in log and reply["reason"] in log  # the replica's own log says it too
    return reply


def test_each_failure_names_its_errno_and_reason(start_runner: Any, tmp_path: Path) -> None:
    runner = start_runner()
    not_executable = tmp_path / "not-executable.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    not_a_program = tmp_path / "garbage"
    not_a_program.write_bytes(b"\x7fELF this is not a real binary")
    not_a_program.chmod(0o755)
    bad_interpreter = tmp_path / "bad-interpreter"
    bad_interpreter.write_text("#!/nonexistent/python\nprint(1)\n")
    bad_interpreter.chmod(0o755)

    cases = {
        "missing": (["no-such-command-here"], {}, "ENOENT", "'no-such-command-here' was not found on PATH"),
        "no-cwd": (["sleep", "1"], {"cwd": tmp_path / "gone"}, "ENOENT", "working directory"),
        "interpreter": ([str(bad_interpreter)], {}, "ENOENT", "#!/nonexistent/python"),
        "no-x": ([str(not_executable)], {}, "EACCES", "is not executable"),
        "garbage": ([str(not_a_program)], {}, "ENOEXEC", "not a program this machine can run"),
        "huge-value": (["true"], {"env": {"BIG": "x" * 200_000}}, "E2BIG", "'BIG' is longer than the 128 KiB"),
        "huge-env": (["true"], {"env": {f"K{i}": "v" * 100 for i in range(30_000)}}, "E2BIG",
                     "more than execve accepts"),
        "nul": (["true"], {"env": {"BAD": "a\0b"}}, "EINVAL", "'BAD' contains a NUL byte"),
    }
    for key, (argv, fields, errno, words) in cases.items():
        reply = failure(runner, key, argv, **fields)
        assert reply["errno"] == errno, (key, reply)
        assert words in reply["reason"], (key, reply)
        print(f"\n{key}: {reply['errno']}: {reply['reason']}", end="")
    assert runner.call("list")["instances"] == []  # nothing half-started is left behind


def test_a_runner_out_of_file_descriptors_says_emfile_and_recovers(start_runner: Any) -> None:
    """A hard limit of 64 open files: spawns fail with EMFILE (not "not executable"), through RunnerClient as
    SpawnFailed too, and succeed again once replicas are gone."""
    runner = start_runner(prlimit=["--nofile=64:64"])
    started = 0
    while True:
        reply = runner.spawn(f"r{started}", ["sleep", "1000"])
        if not reply["ok"]:
            break
        started += 1
        assert started < 64
    assert reply["errno"] == "EMFILE" and "too many open files" in reply["reason"] and "limit 64" in reply["reason"]

    async def through_the_client() -> SpawnFailed:
        client = RunnerClient(runner_socket(runner.home), log_file=runner.home / "runner.log")
        await client.connect(start=False)
        try:
            with pytest.raises(SpawnFailed) as raised:
                await client.call("spawn", key="via-client", argv=["sleep", "1"], env={}, cwd=str(runner.home),
                                  log_path=str(runner.home / "logs" / "via-client.log"), meta={})
        finally:
            await client.close()
        return raised.value

    error = asyncio.run(through_the_client())
    assert error.errno == "EMFILE" and "too many open files" in error.reason

    for n in range(4):
        runner.call("stop", key=f"r{n}", signal=9, grace=1)
        runner.exit_of(f"r{n}")
        runner.call("ack", keys=[f"r{n}"])
    assert runner.spawn("again", ["sleep", "1000"])["ok"]
    print(f"\n{started} replicas under a 64-file hard limit, then: {reply['errno']}: {reply['reason']}")
