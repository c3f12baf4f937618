"""A secret's value never reaches the browser: not in a page, a page part, a JSON answer or the SSE log
stream, read as raw bytes over the dashboard's TCP listener."""

from __future__ import annotations

import time
from pathlib import Path

from tests.dashboard.conftest import open_dashboard
from tests.integration.conftest import Stackblaze, wait_for, write_project

SECRET = "s3cr3t-Value-9f8e7d"
SPEC = """\
project: shop
services:
  - name: worker
    start: python3 -u tick.py
"""
TICK = ("import os, time\nwhile True:\n    print('tick', len(os.environ['API_TOKEN']), flush=True)\n"
        "    time.sleep(0.1)\n")


def test_a_secret_value_is_in_no_html_json_or_sse_payload(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("env", "set", "--project", "shop", "--secret", "API_TOKEN", stdin=SECRET + "\n")
    sb.run("env", "set", "--project", "shop", "PLAIN=visible-value")
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC, {"tick.py": TICK})))
    wait_for("the worker printing", lambda: "tick 19" in sb.run("logs", "worker", "-n", "5").out)
    dash = open_dashboard(sb)
    bodies: dict[str, bytes] = {}
    with dash.client() as client:
        paths = ["/", "/?part=services", "/services/worker?project=shop", "/settings/drains", "/openapi.json",
                 "/v1/env?project=shop", "/v1/ps?project=shop", "/v1/events?project=shop&limit=1000",
                 "/v1/services/worker/releases?project=shop", "/v1/services/worker/usage?project=shop",
                 "/v1/services/worker/previous?project=shop", "/v1/drains?project=shop", "/v1/status",
                 *(f"/services/worker?project=shop&part={part}" for part in ("replicas", "env", "events",
                                                                             "releases", "chart"))]
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:200]}"
            bodies[path] = answer.content
        with client.stream("GET", "/v1/logs/stream", params={"project": "shop", "service": "worker"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            raw, started = b"", time.monotonic()
            for chunk in stream.iter_raw():
                raw += chunk
                if time.monotonic() - started > 1 and raw.count(b"data: ") > 20:
                    break
            bodies["/v1/logs/stream"] = raw
    assert b"visible-value" in bodies["/v1/env?project=shop"] and b"visible-value" in bodies[
        "/services/worker?project=shop&part=env"]  # the env table is there, with the plain value
    assert b"API_TOKEN" in bodies["/services/worker?project=shop"]
    leaked = [path for path, body in bodies.items() if SECRET.encode() in body]
    assert leaked == [], f"the secret's value was sent in {leaked}"
