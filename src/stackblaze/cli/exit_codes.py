"""The CLI's exit codes, by what the caller should do; which error gets which is errors.ERROR_KINDS' rule."""

from __future__ import annotations

from stackblaze.errors import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    StackblazeError,
    kind_of,
)

OK = EXIT_OK
FAILED = EXIT_FAILED  # something went wrong that is not the user's input
USAGE = EXIT_USAGE  # bad input: spec, argument, request (click uses 2 for usage errors too)
NOT_FOUND = EXIT_NOT_FOUND
UNAVAILABLE = EXIT_UNAVAILABLE  # the daemon or runner could not be reached or started
INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


def exit_code_for(error: StackblazeError) -> int:
    return kind_of(error).exit_code
