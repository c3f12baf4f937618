"""Start commands become argvs that let the stop signal reach the worker."""

from __future__ import annotations

from stackblaze.spec.commands import start_argv


def test_simple_commands_are_execd_directly() -> None:
    assert start_argv("python worker.py --queue emails") == ["python", "worker.py", "--queue", "emails"]


def test_single_command_with_shell_syntax_is_execd_by_the_shell() -> None:
    assert start_argv("python w.py --queue=$QUEUE") == ["/bin/sh", "-c", "exec python w.py --queue=$QUEUE"]


def test_several_commands_and_assignments_keep_a_plain_shell() -> None:
    assert start_argv("migrate && python w.py") == ["/bin/sh", "-c", "migrate && python w.py"]
    assert start_argv("FOO=1 python w.py") == ["/bin/sh", "-c", "FOO=1 python w.py"]
