"""The dashboard's TCP listener: every route answers 401 without the token (the routes read from
/openapi.json, so a new one is covered), the token in the URL becomes an HttpOnly cookie, a cookie-only
change needs X-Stackblaze, the unix socket stays tokenless, and a non-loopback --host needs a token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.dashboard.conftest import open_dashboard
from tests.integration.conftest import Stackblaze, write_project

SPEC = "project: shop\nservices:\n  - name: worker\n    start: python3 -u -c 'import time; time.sleep(3600)'\n"
PAGES = ["/", "/services/worker?project=shop", "/settings/drains", "/?part=services", "/static/x.js",
         "/docs", "/nothing-here"]


def concrete(path: str) -> str:
    """A route's path with its parameters filled ({service} -> worker, {drain_id} -> 1)."""
    return re.sub(r"\{[^}]+\}", lambda m: "worker" if m.group(0) == "{service}" else "1", path)


def test_every_route_answers_401_without_the_token(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC)))
    dash = open_dashboard(sb)
    with dash.client() as authorised, dash.client(token=False) as anonymous:
        schema = authorised.get("/openapi.json").json()
        routes = [(method.upper(), concrete(path)) for path, item in schema["paths"].items() for method in item]
        routes += [("GET", "/openapi.json"), *(("GET", page) for page in PAGES)]
        assert len(routes) >= 30 and ("GET", "/v1/logs/stream") in routes and ("POST", "/v1/dashboard") in routes
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Cookie": "stackblaze_token=wrong"}):
                answer = anonymous.request(method, path, headers=headers, json={} if method != "GET" else None)
                assert answer.status_code == 401, f"{method} {path} {headers}: {answer.status_code} {answer.text}"
                assert "stackblaze dashboard" in answer.json()["error"]
        assert anonymous.get("/?token=wrong").status_code == 401
        assert authorised.get("/v1/ps", params={"project": "shop"}).json()["services"][0]["service"] == "worker"
    print(f"401 without the token: {len(routes)} routes x 3 (none, a wrong bearer, a wrong cookie)")


def test_token_in_the_url_becomes_a_cookie_and_a_cookie_change_needs_the_header(sb: Stackblaze,
                                                                                tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC)))
    dash = open_dashboard(sb)
    with httpx.Client(base_url=dash.base, timeout=30) as browser_like:
        landing = browser_like.get(f"/services/worker?project=shop&token={dash.token}")
        assert landing.status_code == 303 and landing.headers["location"] == "/services/worker?project=shop"
        cookie = landing.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and dash.token in cookie
        assert browser_like.get("/services/worker?project=shop").status_code == 200  # the cookie now
        refused = browser_like.post("/v1/services/worker/scale?project=shop", json={"replicas": 2})
        assert refused.status_code == 403 and "X-Stackblaze: 1" in refused.json()["error"]
        assert sb.ps("worker")["services"][0]["desired"] == 1
        allowed = browser_like.post("/v1/services/worker/scale?project=shop", json={"replicas": 2},
                                    headers={"X-Stackblaze": "1"})
        assert allowed.status_code == 200
    assert sb.ps("worker")["services"][0]["desired"] == 2
    # the unix socket stays what the CLI uses, without a token; asking again gives the same dashboard
    again = sb.run("dashboard", "--no-open", "--json").json()
    assert again["url"] == dash.url and again["started"] is False
    text = sb.run("dashboard", "--no-open").out
    assert dash.url in text and "already listening" in text


def test_a_host_beyond_loopback_needs_an_explicit_token(sb: Stackblaze) -> None:
    refused = sb.run("dashboard", "--no-open", "--host", "0.0.0.0", check=False)
    assert refused.code != 0 and "--host 0.0.0.0" in refused.err and "--token" in refused.err
    assert "Traceback" not in refused.err and len(refused.err.strip().splitlines()) == 1
    token = "a-token-of-32-characters-for-tests"
    text = sb.run("dashboard", "--no-open", "--host", "0.0.0.0", "--token", token).out
    assert f"?token={token}" in text and "plain HTTP" in text
    port = re.search(r":(\d+)/\?token=", text)
    assert port is not None
    with httpx.Client(timeout=10) as anyone:
        assert anyone.get(f"http://127.0.0.1:{port.group(1)}/").status_code == 401
        assert anyone.get(f"http://127.0.0.1:{port.group(1)}/", headers={"Authorization": f"Bearer {token}"}
                          ).status_code == 200
