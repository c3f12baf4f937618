"""The CLI's exit codes: one table, by what the caller should do."""

from __future__ import annotations

from stackblaze.errors import NotFoundError, StackblazeError, UnavailableError, UserError

OK = 0
FAILED = 1  # something went wrong that is not the user's input
USAGE = 2  # bad input: spec, argument, request (click uses 2 for usage errors too)
NOT_FOUND = 3
UNAVAILABLE = 4  # the daemon or runner could not be reached or started

_TABLE: list[tuple[type[StackblazeError], int]] = [
    (NotFoundError, NOT_FOUND), (UserError, USAGE), (UnavailableError, UNAVAILABLE),
]


def exit_code_for(error: StackblazeError) -> int:
    return next((code for kind, code in _TABLE if isinstance(error, kind)), FAILED)
