"""Exit words come from what is known: a grace kill, the kernel's OOM count, or neither (then it says so)."""

from __future__ import annotations

import signal

from stackblaze.engine.exits import describe_exit, describe_exit_record


def test_a_kill_after_the_grace_names_the_grace_and_the_stop_signal() -> None:
    assert describe_exit(code=None, sig=9, killed_after_grace=3.0, stop_signal=signal.SIGTERM) == \
        "did not exit within 3s of SIGTERM; killed"
    assert describe_exit(code=None, sig=9, killed_after_grace=0.5, stop_signal=signal.SIGINT) == \
        "did not exit within 0.5s of SIGINT; killed"


def test_a_grace_that_ran_out_as_the_process_exited_by_itself_is_its_own_exit() -> None:
    assert describe_exit(code=0, sig=None, killed_after_grace=3.0, stop_signal=15).startswith("exit 0")


def test_out_of_memory_only_when_the_kernel_counted_it() -> None:
    oom = "killed by the kernel: out of memory (its cgroup's oom_kill count rose)"
    assert describe_exit(code=None, sig=9, oom_killed=True) == oom
    assert describe_exit(code=137, sig=None, oom_killed=True) == f"137 = SIGKILL: {oom}"
    assert describe_exit(code=1, sig=None, oom_killed=True) == \
        "exit 1: general error; the kernel killed a process of it, out of memory"
    for words in (describe_exit(code=None, sig=9), describe_exit(code=137, sig=None)):
        assert "memory" not in words


def test_any_other_sigkill_is_not_by_stackblaze() -> None:
    assert describe_exit(code=None, sig=9) == "killed by SIGKILL (not by stackblaze)"
    assert describe_exit(code=137, sig=None) == "137 = SIGKILL: killed by SIGKILL (not by stackblaze)"


def test_other_signals_and_codes_keep_their_words() -> None:
    assert describe_exit(code=None, sig=15) == "SIGTERM: asked to stop"
    assert describe_exit(code=None, sig=11) == "SIGSEGV: segmentation fault: the process crashed"
    assert describe_exit(code=3, sig=None) == "exit 3: the process reported an error"
    assert describe_exit(code=None, sig=None) == "unknown"


def test_exit_zero_is_not_called_clean_for_a_worker() -> None:
    assert "cleanly" not in describe_exit(code=0, sig=None)


def test_a_runner_record_is_described_from_its_fields() -> None:
    record = {"exit_code": None, "exit_signal": 9, "killed_after_grace": 0.3, "stop_signal": 15, "oom_killed": False}
    assert describe_exit_record(record) == "did not exit within 0.3s of SIGTERM; killed"
    assert describe_exit_record({"exit_code": None, "exit_signal": 9}) == "killed by SIGKILL (not by stackblaze)"
    oom = {"exit_code": None, "exit_signal": 9, "oom_killed": True}
    assert describe_exit_record(oom).startswith("killed by the kernel")


def test_a_clean_exit_after_a_requested_stop_is_not_called_ending_by_itself() -> None:
    assert describe_exit(code=0, sig=None, stop_requested=True, stop_signal=15) == "exit 0 after SIGTERM, as asked"
    assert describe_exit(code=0, sig=None).startswith("exit 0: ended by itself")
    assert describe_exit(code=1, sig=None, stop_requested=True, stop_signal=15) == \
        "exit 1: general error"  # a failure on the way out is still reported as one
