"""What an exit code or a signal means, in words a user can act on."""

from __future__ import annotations

import signal

SIGNAL_MEANINGS: dict[int, str] = {
    signal.SIGKILL: "killed, often out of memory",
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
    0: "exited cleanly",
    1: "general error",
    2: "misuse of a command or bad arguments",
    126: "the start command is not executable",
    127: "the start command was not found",
}


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(*, code: int | None, sig: int | None) -> str:
    """`exit 3: ...`, `SIGKILL: killed, often out of memory`, `137 = SIGKILL: ...` for shells' codes."""
    if sig is not None:
        return f"{signal_name(sig)}: {SIGNAL_MEANINGS.get(sig, 'killed by a signal')}"
    if code is None:
        return "unknown"
    if code > 128 and code - 128 < 65:
        sig_number = code - 128
        meaning = SIGNAL_MEANINGS.get(sig_number, "killed by a signal")
        return f"{code} = {signal_name(sig_number)}: {meaning}"
    return f"exit {code}: {CODE_MEANINGS.get(code, 'the process reported an error')}"
