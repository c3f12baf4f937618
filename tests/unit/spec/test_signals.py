"""parse_signal: names, short names, numbers and aliases become one canonical name."""

from __future__ import annotations

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec.signals import parse_signal

WHERE = "stackblaze.yaml:5: services[0].stop_signal"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("SIGTERM", "SIGTERM"),
        ("TERM", "SIGTERM"),
        ("sigterm", "SIGTERM"),
        (15, "SIGTERM"),
        ("2", "SIGINT"),
        ("quit", "SIGQUIT"),
        ("SIGIOT", "SIGABRT"),
        ("usr1", "SIGUSR1"),
    ],
)
def test_accepted(value: object, name: str) -> None:
    assert parse_signal(value, where=WHERE) == name


@pytest.mark.parametrize("value", ["SIGFOO", "", "SIG", 0, 10**30, True, 15.0, None, "1" * 10, "١٥"])
def test_not_a_signal(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_signal(value, where=WHERE)

    assert str(caught.value).startswith(f"{WHERE}: ")
    assert str(caught.value).endswith(" is not a signal (e.g. stop_signal: SIGTERM, SIGINT or SIGQUIT)")


@pytest.mark.parametrize("value", ["SIGKILL", "kill", 9, "STOP", 19])
def test_uncatchable_signals_are_refused(value: object) -> None:
    with pytest.raises(SpecError, match="cannot be caught"):
        parse_signal(value, where=WHERE)
