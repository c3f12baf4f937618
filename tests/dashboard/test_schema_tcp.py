"""schemathesis against /openapi.json over the dashboard's TCP listener, with the token: the same checks
as tests/reliability/test_api_schema.py (no 5xx, every answer as documented), through the token gate."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.dashboard.conftest import open_dashboard
from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.reliability.test_api_schema import SPEC, STREAM_FOR, TICK, Tally, fuzz

EXAMPLES = 10  # per operation and mode: the socket test runs 30; this one is about the gate in front


class ToListener(httpx.BaseTransport):
    """send() builds URLs for http://stackblaze (the socket test's base): they go to the listener here."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@pytest.mark.timeout(900)
def test_schemathesis_over_tcp_with_the_token(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC, {"tick.py": TICK})))
    wait_for("the consumer running", lambda: sb.replicas("queue-consumer")[0]["state"] == "running")
    dash = open_dashboard(sb)
    port = int(dash.base.rsplit(":", 1)[1])
    tally = Tally()
    with httpx.Client(transport=ToListener(port), base_url="http://stackblaze",
                      headers={"Authorization": f"Bearer {dash.token}"},
                      timeout=httpx.Timeout(120, read=STREAM_FOR)) as client:
        tested = fuzz(client, tally, examples=EXAMPLES)
    print(f"schemathesis over TCP with the token: {len(tested)} operations, {tally.requests} requests, "
          f"statuses {dict(sorted(tally.by_status.items()))}; 5xx: {len(tally.server_errors)}, "
          f"schema violations: {len(tally.violations)}")
    assert "GET /v1/logs/stream" in tested and "POST /v1/dashboard" in tested
    assert 401 not in tally.by_status and tally.requests > 20 * EXAMPLES
    assert tally.server_errors == []
    assert tally.violations == []
