"""parse_duration: the duration forms a spec accepts, and the one-line errors for the rest."""

from __future__ import annotations

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec import parse_duration

WHERE = "stackblaze.yaml:9: services[0].shutdown_grace"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1m 30s", 90.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("1h2m3s4ms", 3723.004),
        (" 10S ", 10.0),
        ("0s", 0.0),
    ],
)
def test_accepted_forms(value: object, seconds: float) -> None:
    assert parse_duration(value, where=WHERE) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["soon", "", "s", "30x", "30s1m", "1m1m", "-5s", "1.s", "30 seconds", None, True, [30]]
)
def test_rejected_forms(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_duration(value, where=WHERE)

    assert str(caught.value) == f"{WHERE}: {value!r} is not a duration (e.g. shutdown_grace: 30s, 1m30s or 500ms)"


def test_negative_numbers() -> None:
    with pytest.raises(SpecError, match=r"^stackblaze.yaml:3: -1 must not be negative \(e.g. 30s\)$"):
        parse_duration(-1, where="stackblaze.yaml:3")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400, "9" * 400 + "s"])
def test_infinite_or_unrepresentable_values(value: object) -> None:
    with pytest.raises(SpecError, match="is not a finite duration"):
        parse_duration(value, where=WHERE)
