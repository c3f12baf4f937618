"""One table maps each kind of error to the daemon's HTTP status and the CLI's exit code, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.build.builder import BuildFailed
from stackblaze.cli.client import error_from
from stackblaze.cli.exit_codes import exit_code_for
from stackblaze.errors import (
    ConflictError,
    DiskFullError,
    NotFoundError,
    SpecError,
    StackblazeError,
    UnavailableError,
    UserError,
    kind_of,
)

TABLE = [  # what the README promises: 1 failure, 2 bad input, 3 not found, 4 daemon unavailable
    (SpecError("stackblaze.yaml:3: services[0].replicas: 'four' is not a whole number"), 400, 2),
    (NotFoundError("no service 'nosuch'"), 404, 3),
    (ConflictError("no project deployed yet"), 409, 2),
    (UserError("--replicas: 'x' is not a whole number"), 400, 2),
    (DiskFullError("disk full (/home/x): free space and retry"), 507, 1),
    (UnavailableError("the daemon did not start"), 503, 4),
    (BuildFailed("pip install failed", tail=[], log_path=Path("/x")), 500, 1),
    (StackblazeError("failed"), 500, 1),
]


@pytest.mark.parametrize(("error", "status", "code"), TABLE, ids=[type(e).__name__ for e, _, _ in TABLE])
def test_an_error_keeps_its_status_and_exit_code_across_the_socket(error: StackblazeError, status: int,
                                                                     code: int) -> None:
    assert kind_of(error).http_status == status
    assert exit_code_for(error) == code
    # the daemon answers {"error", "kind"} with the status; the CLI turns it back into an error
    answered = error_from({"error": str(error), "kind": type(error).__name__}, status)
    assert str(answered) == str(error)
    assert exit_code_for(answered) == code
    # in a stream (HTTP 200 already sent) the answer carries the status itself
    streamed = error_from({"error": str(error), "kind": type(error).__name__, "status": status})
    assert exit_code_for(streamed) == code


def test_a_kind_the_cli_does_not_know_is_read_by_its_status() -> None:
    class ProjectGone(NotFoundError):
        pass

    error = ProjectGone("project 'acme' is not deployed")
    answered = error_from({"error": str(error), "kind": "ProjectGone"}, kind_of(error).http_status)
    assert isinstance(answered, NotFoundError) and exit_code_for(answered) == 3
    # not ours at all (e.g. a proxy's 502 with no kind): a failure
    assert exit_code_for(error_from({"error": "bad gateway"}, 502)) == 1
