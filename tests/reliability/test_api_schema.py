"""schemathesis against the real daemon, over its unix socket (the daemon the CLI starts, with a real runner,
store and a deployed project in a temp home): valid and invalid requests for every operation of the OpenAPI
document give no 5xx, and every answer matches the document (status, content type, body schema)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import Stackblaze, wait_for, write_project

SPEC = """\
project: shop
services:
  - name: queue-consumer
    start: python3 -u tick.py
"""
TICK = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.2)\n"
EXAMPLES = 30  # per operation and mode
SKIPPED = {("POST", "/v1/shutdown")}  # it stops the daemon under test, as it should
LAST = ("POST", "/v1/destroy")  # run once the rest has had a deployed project to work on
STREAM_FOR = 1.0  # seconds of a followed stream (logs, events) read before hanging up
SCHEMA_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


class Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.server_errors: list[str] = []
        self.violations: list[str] = []


def send(client: httpx.Client, case: Any) -> httpx.Response:
    """The case as schemathesis would send it, over the daemon's socket; a followed stream is read for
    STREAM_FOR seconds and then closed."""
    kwargs = case.as_transport_kwargs(base_url="http://stackblaze")
    content = kwargs.get("data")
    if "json" in kwargs:
        content = json.dumps(kwargs["json"]).encode()
    started = time.monotonic()
    request = client.build_request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                   headers=kwargs.get("headers"), content=content)
    response = client.send(request, stream=True)
    body = b""
    try:
        for chunk in response.iter_raw():
            body += chunk
            if time.monotonic() - started > STREAM_FOR and response.headers.get("content-type", "").startswith(
                    ("application/x-ndjson", "text/event-stream")):
                break
    except httpx.ReadTimeout:  # a followed stream with nothing new to say
        pass
    finally:
        response.close()
    whole = httpx.Response(response.status_code, headers=response.headers, content=body, request=request)
    whole.elapsed = timedelta(seconds=time.monotonic() - started)
    return whole


def check(case: Any, response: httpx.Response, tally: Tally) -> None:
    tally.requests += 1
    tally.by_status[response.status_code] = tally.by_status.get(response.status_code, 0) + 1
    label = f"{case.method} {case.formatted_path} {case.query or ''} -> {response.status_code} {response.text[:200]!r}"
    for checks, found in (([not_a_server_error], tally.server_errors), (SCHEMA_CHECKS, tally.violations)):
        try:
            case.validate_response(response, checks=checks)
        except BaseExceptionGroup as failures:
            found.append(f"{label}: {'; '.join(str(f).splitlines()[0] for f in failures.exceptions)}")


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC, {"tick.py": TICK})))
    wait_for("the consumer running", lambda: sb.replicas("queue-consumer")[0]["state"] == "running")
    tally = Tally()
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sb.home / "api.sock")), base_url="http://stackblaze",
                      timeout=httpx.Timeout(120, read=STREAM_FOR)) as client:
        tested = fuzz(client, tally, examples=EXAMPLES)
    print(f"schemathesis over the daemon's socket: {len(tested)} operations, {tally.requests} requests, "
          f"statuses {dict(sorted(tally.by_status.items()))}; 5xx: {len(tally.server_errors)}, "
          f"schema violations: {len(tally.violations)}")
    assert len(tested) >= 20 and tally.requests > 20 * EXAMPLES
    assert tally.server_errors == []
    assert tally.violations == []


def fuzz(client: httpx.Client, tally: Tally, *, examples: int) -> list[str]:
    """Every operation of the daemon's /openapi.json (but SKIPPED), positive and negative cases, `examples`
    each, the same cases in every run; each answer checked into `tally`. Returns the operations tested."""
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: (op.method.upper(), op.path) == LAST)
    tested = []
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        tested.append(f"{operation.method.upper()} {operation.path}")
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck), derandomize=True)  # the same cases in CI
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                check(case, send(client, case), tally)

            try:
                run()
            except Unsatisfiable:  # nothing invalid to make (e.g. no parameters at all)
                pass
    return tested
