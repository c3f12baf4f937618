"""What an exit code or a signal means, in words a user can act on: said from what is known, never guessed."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

SIGNAL_MEANINGS: dict[int, str] = {
    signal.SIGKILL: "killed by SIGKILL (not by stackblaze)",
    signal.SIGTERM: "asked to stop",
    signal.SIGINT: "interrupted",
    signal.SIGSEGV: "segmentation fault: the process crashed",
    signal.SIGABRT: "aborted: the process crashed (failed assertion or abort())",
    signal.SIGBUS: "bus error: the process crashed",
    signal.SIGFPE: "arithmetic error: the process crashed",
    signal.SIGILL: "illegal instruction: the process crashed",
    signal.SIGHUP: "hang-up",
    signal.SIGPIPE: "wrote to a closed pipe",
    signal.SIGQUIT: "quit",
}

CODE_MEANINGS = {
    0: "ended by itself (a worker is meant to keep running)",
    1: "general error",
    2: "misuse of a command or bad arguments",
    126: "the start command is not executable",
    127: "the start command was not found",
}

OUT_OF_MEMORY = "killed by the kernel: out of memory (its cgroup's oom_kill count rose)"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(*, code: int | None, sig: int | None, oom_killed: bool = False,
                  killed_after_grace: float | None = None, stop_signal: int | None = None,
                  stop_requested: bool = False) -> str:
    """One line for an exit, from the runner's facts.

    `killed_after_grace` (seconds) and `stop_signal`: stackblaze sent SIGKILL because the replica outlived
    its grace after the stop signal -> `did not exit within 3s of SIGTERM; killed`. `oom_killed`: the
    kernel's OOM killer killed a process of the replica (its cgroup says so). Without either, a SIGKILL
    came from elsewhere: `killed by SIGKILL (not by stackblaze)`. Codes: `exit 3: ...`, and `137 =
    SIGKILL: ...` for a shell's code for its child's signal."""
    if killed_after_grace is not None and sig == signal.SIGKILL:
        stop = signal_name(stop_signal) if stop_signal else "the stop signal"
        return f"did not exit within {killed_after_grace:g}s of {stop}; killed"
    if sig is not None:
        if sig == signal.SIGKILL:
            return OUT_OF_MEMORY if oom_killed else SIGNAL_MEANINGS[sig]
        return f"{signal_name(sig)}: {SIGNAL_MEANINGS.get(sig, 'killed by a signal')}"
    if code is None:
        return "unknown"
    if code > 128 and code - 128 < 65:
        sig_number = code - 128
        if sig_number == signal.SIGKILL and oom_killed:
            return f"{code} = SIGKILL: {OUT_OF_MEMORY}"
        meaning = SIGNAL_MEANINGS.get(sig_number, "killed by a signal")
        return f"{code} = {signal_name(sig_number)}: {meaning}"
    if code == 0 and stop_requested:  # a stop, scale-down or rollout asked it to end, and it did, cleanly
        return f"exit 0 after {signal_name(stop_signal) if stop_signal else 'the stop signal'}, as asked"
    words = f"exit {code}: {CODE_MEANINGS.get(code, 'the process reported an error')}"
    if oom_killed:  # the main process exited by itself, after the kernel killed one of its children
        words += "; the kernel killed a process of it, out of memory"
    return words


def describe_exit_record(record: Mapping[str, Any]) -> str:
    """describe_exit for a runner exit record (exit_code, exit_signal, oom_killed, killed_after_grace,
    stop_signal); the grace is the one the runner was given (scaled by STACKBLAZE_TIME_SCALE)."""
    return describe_exit(
        code=record.get("exit_code"), sig=record.get("exit_signal"), oom_killed=bool(record.get("oom_killed")),
        killed_after_grace=record.get("killed_after_grace"), stop_signal=record.get("stop_signal"),
        stop_requested=bool(record.get("stop_requested")),
    )
