"""What the CLI checks before it sends: names in paths and queries; and what it escapes on a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.cli.client import Client, checked_path
from stackblaze.cli.render import escape_controls
from stackblaze.errors import SpecError
from stackblaze.settings import Settings


@pytest.mark.parametrize("name", ["../destroy?", "..", "a/b", "worker/stop", "%2e%2e", "Worker", "", "x" * 100_000,
                                  "a\nb", "a#b"])
def test_a_service_name_is_never_a_path(name: str) -> None:
    with pytest.raises(SpecError) as refused:
        checked_path(f"/v1/services/{name}/stop")
    assert str(refused.value).startswith("service: ") and "is not a valid name" in str(refused.value)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


def test_valid_names_pass_and_other_paths_are_left_alone() -> None:
    assert checked_path("/v1/services/queue-consumer-2/build-log") == "/v1/services/queue-consumer-2/build-log"
    assert checked_path("/v1/drains/3/test") == "/v1/drains/3/test"
    assert checked_path("/v1/ps") == "/v1/ps"


def test_names_in_the_query_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    client = Client(Settings(home=tmp_path, time_scale=1.0), project="../shop")
    with pytest.raises(SpecError, match=r"^--project: '\.\./shop' is not a valid name"):
        client.request("GET", "/v1/ps")
    client.project = None
    with pytest.raises(SpecError, match=r"^service: 'W' is not a valid name"):
        client.request("GET", "/v1/logs", params={"service": "W"})
    assert not (tmp_path / "run").exists()  # no daemon was started for a request that could not be sent


def test_control_characters_are_shown_escaped() -> None:
    assert escape_controls("a\x1b[31mb\tc\x07\x7f\x9b\u00e9\r\n\x00") == "a\\x1b[31mb\tc\\x07\\x7f\\x9bé\\x0d\\x0a\\x00"
    assert escape_controls("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
