"""One tree of errors, sorted by what the caller does about them."""

from __future__ import annotations


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
