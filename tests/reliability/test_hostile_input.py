"""Hostile and clumsy input, through the real CLI and the real API: every one is a one-line error (exit 2 on
the CLI, a 4xx JSON answer from the API, never a 5xx or a traceback), and nothing changes."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Stackblaze, wait_for, write_project

SPEC = """\
project: shop
services:
  - name: worker
    start: python3 -u -c "import time; time.sleep(1e6)"
    replicas: 2
  - name: other
    start: python3 -u -c "import time; time.sleep(1e6)"
"""
NAMES = ["../destroy?", "..", "../../destroy", "worker/../..", "worker/stop", "%2e%2e", "worker?x=1", "worker#",
         "Worker", "-worker", "worker-", "w" * 41, "x" * 100_000, "wörker", "a b", "a\nb", "", "a;rm -rf /"]
BIG = "x" * (140 * 1024)


@pytest.fixture
def shop(sb: Stackblaze, tmp_path: Path) -> Stackblaze:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC)))
    wait_for("both workers running", lambda: all(r["state"] == "running" for r in sb.replicas("worker")))
    return sb


def snapshot(sb: Stackblaze) -> dict[str, Any]:
    """What a change would show: every replica's pid and state, the env, and the kinds of events."""
    ps = sb.ps()
    return {
        "replicas": sorted((s["service"], r["replica"], r["pid"], r["state"]) for s in ps["services"]
                           for r in s["replicas"]),
        "env": sb.run("env", "list", "--json").json()["env"],
        "events": [e["id"] for e in sb.events()],
    }


def one_line_error(result: Any, code: int = 2) -> str:
    assert result.code == code, (result.code, result.err[:500])
    assert "Traceback" not in result.err + result.out
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("deploying ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err[:500]
    assert len(lines[0]) < 400, lines[0][:500]
    return str(lines[0])


def test_cli_names_are_never_paths(shop: Stackblaze) -> None:
    before = snapshot(shop)
    commands = [("stop",), ("start",), ("restart",), ("scale", "--replicas", "0"), ("releases",), ("rollback",),
                ("logs", "--build")]
    refused = 0
    for name in NAMES:
        for command in commands:
            args = [*command, "--", name]  # "--": "-worker" is a name here, not an option
            message = one_line_error(shop.run(*args, check=False))
            assert "is not a valid name" in message, message
            refused += 1
    print(f"{refused} commands with hostile service names: all exit 2 with one line, e.g. "
          f"{one_line_error(shop.run('stop', '../destroy?', check=False))}")
    # Names that are query parameters are checked by the daemon: the same one-line answer, exit 2.
    for name in ("../destroy?", "x" * 100_000, "Worker"):
        assert "is not a valid name" in one_line_error(shop.run("logs", name, check=False))
        assert "is not a valid name" in one_line_error(shop.run("ps", "--project", name, check=False))
    assert snapshot(shop) == before
    assert shop.ps()["project"] == "shop"


def test_cli_env_and_since_refuse_what_no_process_could_receive(shop: Stackblaze) -> None:
    before = snapshot(shop)
    for pair in ("1A=x", "A-B=x", "=x", "É=x", "A B=x", "A\tB=x"):
        assert "is not a variable name" in one_line_error(shop.run("env", "set", pair, check=False))
    assert "contains a NUL character" in one_line_error(shop.run("env", "set", "TOKEN", stdin="a\0b\n", check=False))
    too_long = one_line_error(shop.run("env", "set", "TOKEN", stdin=BIG + "\n", check=False))
    assert "at most 131,072 (128 KiB)" in too_long
    since = one_line_error(shop.run("logs", "--since", "99999999999h", check=False))
    assert since == "error: --since: '99999999999h' goes back before 1970 (e.g. --since 2h)"
    print(f"env set of a 140 KiB value: {too_long}\nlogs --since 99999999999h: {since}")
    assert snapshot(shop) == before


def test_spec_env_over_the_limits_is_refused_at_its_line(sb: Stackblaze, tmp_path: Path) -> None:
    value_spec = SPEC + f"    env:\n      BIG: {BIG}\n"
    result = sb.run("deploy", str(write_project(tmp_path / "one", value_spec)), check=False)
    one = one_line_error(result)
    assert one.startswith("error: stackblaze.yaml:9: services[1].env.BIG: "), one
    # 256 KiB is the most a spec file may hold; YAML aliases can still make an environment of megabytes.
    aliases = "".join(f"      A{i}: *big\n" for i in range(1, 10))
    aliased = SPEC + f"    env:\n      A0: &big {'y' * 120_000}\n" + aliases
    message = one_line_error(sb.run("deploy", str(write_project(tmp_path / "two", aliased)), check=False))
    assert "services[1].env: 10 variables take" in message and "at most 1,048,576 (1 MiB)" in message, message
    print(f"a 140 KiB value: {one}\nten aliased 120 KB values: {message}")


@pytest.fixture
def api(shop: Stackblaze) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(shop.home / "api.sock")), base_url="http://stackblaze",
                      timeout=60) as client:
        yield client


def refused(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    payload = response.json()
    assert isinstance(payload["error"], str) and "\n" not in payload["error"] and len(payload["error"]) < 400
    assert payload["kind"] in ("UserError", "SpecError", "NotFoundError")
    return str(payload["error"])


def raw_get(home: Path, target: str) -> httpx.Response:
    """A GET written by hand on the API socket: httpx itself refuses a URL part over 64 KiB."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(home / "api.sock"))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: stackblaze\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return httpx.Response(int(head.split()[1]), content=body)


def test_api_numbers_names_and_bodies_never_give_a_5xx(shop: Stackblaze, api: httpx.Client) -> None:
    before = snapshot(shop)
    for target in (f"/v1/ps?service={'x' * 100_000}", f"/v1/services/{'x' * 100_000}/releases"):
        assert "is not a valid name" in refused(raw_get(shop.home, target))
    long_name = "x" * 60_000
    cases: list[tuple[str, str, dict[str, Any]]] = [
        *[("GET", "/v1/logs", {"params": {"since": value}}) for value in ("nan", "inf", "-inf", "1e308", "-1", "x")],
        *[("GET", "/v1/logs", {"params": {"n": value}}) for value in (str(10**30), "-1", "1.5", "abc", "")],
        ("GET", "/v1/logs", {"params": {"replica": str(10**30)}}),
        *[("GET", "/v1/events", {"params": {"limit": value}}) for value in (str(10**30), "0", "abc", "1e3")],
        ("GET", "/v1/ps", {"params": {"service": long_name}}),
        ("GET", "/v1/ps", {"params": {"project": "../shop"}}),
        ("GET", "/v1/events", {"params": {"service": "Worker"}}),
        ("POST", f"/v1/services/{long_name}/stop", {}),
        ("POST", "/v1/services/Worker/stop", {}),
        ("POST", "/v1/services/worker/rollback", {"json": {"release": 10**30}}),
        ("GET", "/v1/services/worker/build-log", {"params": {"release": str(10**30)}}),
        ("DELETE", "/v1/drains/99999999999999999999999", {}),
        ("POST", "/v1/drains", {"json": {"url": "syslog://h:1", "service": "../x"}}),
        ("POST", "/v1/deploy", {"json": {"path": "relative/dir"}}),
        ("POST", "/v1/deploy", {"json": {"path": "/tmp/x\u0000y"}}),
        ("POST", "/v1/env", {"json": {"set": {"A=B": "x"}}}),
        ("POST", "/v1/env", {"json": {"set": {"": "x"}}}),
        ("POST", "/v1/env", {"json": {"set": {"A\u0000": "x"}}}),
        ("POST", "/v1/env", {"json": {"set": {"A": "x\u0000y"}}}),
        ("POST", "/v1/env", {"content": b'{"set": {"A": "\\ud800"}}', "headers": {"content-type": "application/json"}}),
        ("POST", "/v1/env", {"json": {"set": {"A": BIG}}}),
        ("POST", "/v1/env", {"json": {"unset": ["A=B"]}}),
        ("POST", "/v1/env", {"json": {"set": {"A": "x"}, "service": "../destroy"}}),
        ("POST", "/v1/env", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/v1/services/worker/scale", {"json": {"replicas": 10**30}}),
    ]
    for method, path, kwargs in cases:
        refused(api.request(method, path, **kwargs))
    # A name with "/" in it cannot even reach a route: the path is not one of ours.
    assert refused(api.post("/v1/services/..%2Fdestroy%3F/stop"), 404) == "Not Found"
    print(f"{len(cases) + 1} hostile API requests: 0 5xx, each a one-line JSON error, e.g. "
          f"{refused(api.get('/v1/logs', params={'since': 'nan'}))!r}, "
          f"{refused(api.get('/v1/events', params={'limit': str(10**30)}))!r}")
    assert snapshot(shop) == before


def test_api_bodies_are_capped_at_one_mib(shop: Stackblaze, api: httpx.Client) -> None:
    big = json.dumps({"set": {"A": "x" * (2 << 20)}}).encode()
    by_length = api.post("/v1/env", content=big, headers={"content-type": "application/json"})
    chunked = api.post("/v1/env", content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                       headers={"content-type": "application/json"})
    for response in (by_length, chunked):
        assert refused(response, 413) == "request body: larger than 1048576 bytes (the API takes at most 1 MiB)"
    assert "content-length" not in chunked.request.headers
    print("2 MiB bodies, with Content-Length and chunked: 413 both")
    assert shop.run("env", "list", "--json").json()["env"] == []


def test_the_whole_environment_is_checked_as_execve_would(shop: Stackblaze, api: httpx.Client,
                                                          tmp_path: Path) -> None:
    first = {f"BIG{i}": "x" * 120_000 for i in range(5)}
    assert api.post("/v1/env", json={"set": first}).status_code == 200
    second = {f"MORE{i}": "y" * 120_000 for i in range(5)}
    message = refused(api.post("/v1/env", json={"set": second, "service": "worker"}))
    assert message.startswith("env (service worker): ") and "at most 1,048,576 (1 MiB)" in message, message
    print(f"a second 600 KB of env for one service: {message}")
    assert sorted(v["key"] for v in shop.run("env", "list", "--json").json()["env"]) == sorted(first)
    # What was accepted fits: every replica runs with it.
    wait_for("replicas running with 600 KB of env", lambda: all(
        r["state"] == "running" and r["restart_count"] == 0 for r in shop.replicas("worker")), timeout=30)
    assert math.isclose(len(first) * 120_000, 600_000)
    # A spec whose env fits alone, but not with the 600 KB stored: the deploy says so before building.
    aliases = "".join(f"      S{i}: *big\n" for i in range(1, 4))
    spec = SPEC + f"    env:\n      S0: &big {'z' * 120_000}\n" + aliases
    result = shop.run("deploy", str(write_project(tmp_path / "bigger", spec)), check=False)
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]  # after build progress
    assert result.code == 2 and len(errors) == 1 and "Traceback" not in result.err
    deploy = errors[0]
    assert deploy.startswith("error: other: env (the spec's and env set's): 9 variables take"), deploy
    print(f"a deploy adding 480 KB of spec env to it: {deploy}")
    assert [r["release"] for r in shop.replicas("other")] == [1]
