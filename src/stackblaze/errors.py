"""One tree of errors, sorted by what the caller does about them."""

from __future__ import annotations

from dataclasses import dataclass


class StackblazeError(Exception):
    """Base of every error stackblaze raises on purpose; its message is one line for a user."""


class UserError(StackblazeError):
    """The input is wrong (spec, CLI argument, API request): fix it and try again."""


class SpecError(UserError):
    """stackblaze.yaml or Procfile is invalid; the message names file:line, field, value and fix."""


class NotFoundError(UserError):
    """A named thing (service, project, env var) does not exist."""


class ConflictError(UserError):
    """The request contradicts the current state (e.g. no project deployed yet)."""


class UnavailableError(StackblazeError):
    """A part of stackblaze itself cannot be reached (daemon, runner); retrying later may help."""


class DiskFullError(StackblazeError):
    """The filesystem under STACKBLAZE_HOME is full: free space and retry (reads keep working meanwhile)."""

    @classmethod
    def at(cls, path: object) -> DiskFullError:
        return cls(f"disk full ({path}): free space and retry")


# -- what each kind of error is to the API and to the CLI: one table ---------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class ErrorKind:
    error: type[StackblazeError]
    http_status: int
    exit_code: int


# The first row an error is an instance of decides, so a subclass comes before its base. The daemon answers
# with the row's HTTP status and the error's class name; the CLI turns that back into the error (by name,
# else by status) and exits with the row's code.
ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind(SpecError, 400, EXIT_USAGE),
    ErrorKind(NotFoundError, 404, EXIT_NOT_FOUND),
    ErrorKind(ConflictError, 409, EXIT_USAGE),
    ErrorKind(UserError, 400, EXIT_USAGE),
    ErrorKind(DiskFullError, 507, EXIT_FAILED),
    ErrorKind(UnavailableError, 503, EXIT_UNAVAILABLE),
    ErrorKind(StackblazeError, 500, EXIT_FAILED),
)


def kind_of(error: BaseException) -> ErrorKind:
    """The table's row for `error` (anything not ours is a failure: 500, exit 1)."""
    return next((kind for kind in ERROR_KINDS if isinstance(error, kind.error)), ERROR_KINDS[-1])


def error_from_answer(kind: str | None, message: str, status: int | None = None) -> StackblazeError:
    """The error a daemon answer stands for: its `kind` when the table has that class, else the most general
    row with its HTTP `status` (a subclass the CLI does not know, e.g. BuildFailed), else a plain failure."""
    row = next((row for row in ERROR_KINDS if row.error.__name__ == kind), None)
    if row is None:
        row = next((row for row in reversed(ERROR_KINDS) if row.http_status == status), ERROR_KINDS[-1])
    return row.error(message)
