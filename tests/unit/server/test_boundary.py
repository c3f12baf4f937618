"""The API's boundary on a small FastAPI app of its own: one-line 400s, the 1 MiB body cap, names checked on
every route, and an OpenAPI document that lists the answers the daemon really gives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from stackblaze.server import boundary
from stackblaze.server.boundary import MAX_BODY, EventLimit, Since, describe


class Body(BaseModel):
    text: str


def make_app() -> FastAPI:
    app = FastAPI(responses=boundary.RESPONSES, dependencies=[Depends(boundary.check_names)])
    boundary.install(app)

    @app.post("/v1/services/{service}/echo")
    async def echo(service: str, body: Body, project: str | None = None) -> dict[str, Any]:
        return {"service": service, "length": len(body.text), "project": project}

    @app.get("/v1/numbers")
    async def numbers(limit: EventLimit = 50, since: Since = None) -> dict[str, Any]:
        return {"limit": limit, "since": since}
    return app


class Client:
    """httpx in process, through the app's whole ASGI stack (middleware included)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t") as http:
                return await http.request(method, url, **kwargs)
        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def client() -> Client:
    return Client(make_app())


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error", "kind"} and "\n" not in payload["error"]
    return str(payload["error"])


def test_bodies_over_one_mib_get_413_with_or_without_content_length(client: Client) -> None:
    fits = '{"text": "' + "x" * (MAX_BODY - 20) + '"}'
    answer = client.post("/v1/services/worker/echo", content=fits, headers={"content-type": "application/json"})
    assert answer.json()["length"] == MAX_BODY - 20
    big = ('{"text": "' + "x" * MAX_BODY + '"}').encode()
    expected = "request body: larger than 1048576 bytes (the API takes at most 1 MiB)"
    assert error(client.post("/v1/services/worker/echo", content=big), 413) == expected

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap counts what arrives
        for start in range(0, len(big), 4096):
            yield big[start:start + 4096]
    assert error(client.post("/v1/services/worker/echo", content=chunks()), 413) == expected


def test_validation_errors_are_one_line_400s_naming_the_field(client: Client) -> None:
    assert error(client.get("/v1/numbers", params={"limit": "abc"}), 400) == "limit: 'abc' is not a whole number"
    assert error(client.get("/v1/numbers", params={"limit": str(10**30)}), 400) == \
        "limit: '1000000000000000000000000000000' must be at most 100000"
    assert error(client.get("/v1/numbers", params={"since": "nan"}), 400) == "since: 'nan' is not a finite number"
    assert error(client.get("/v1/numbers", params={"since": "-1"}), 400) == "since: '-1' must be at least 0"
    json_type = {"content-type": "application/json"}
    assert error(client.post("/v1/services/worker/echo", content=b"{nope", headers=json_type), 400).startswith(
        "request body: not valid JSON")
    assert error(client.post("/v1/services/worker/echo", content=b"{nope"), 400) == \
        "request body: b'{nope' is not a JSON object (send one, with Content-Type: application/json)"
    assert error(client.post("/v1/services/worker/echo", json={}), 400) == "text: missing"
    assert error(client.get("/v1/nothing"), 404) == "Not Found"


def test_every_service_and_project_parameter_is_a_name(client: Client) -> None:
    rule = "is not a valid name: use 1-40 lowercase letters, digits and '-', starting with a letter"
    assert error(client.post("/v1/services/Worker/echo", json={"text": ""}), 400) == \
        f"service: 'Worker' {rule} (e.g. service: worker)"
    assert rule in error(client.post("/v1/services/worker/echo", params={"project": "../x"}, json={"text": ""}), 400)
    assert rule in error(client.post(f"/v1/services/{'w' * 5000}/echo", json={"text": ""}), 400)
    assert client.post("/v1/services/worker/echo", params={"project": "shop"}, json={"text": ""}).json() == {
        "service": "worker", "length": 0, "project": "shop"}


def test_the_openapi_document_lists_the_answers_given() -> None:
    document = make_app().openapi()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"400", "404", "409", "413"} <= statuses and "422" not in statuses, (method, path)
            for parameter in operation.get("parameters", []):
                if parameter["name"] in ("service", "project"):
                    schemas = parameter["schema"].get("anyOf", [parameter["schema"]])
                    assert any(s.get("pattern") == boundary.NAME_PATTERN for s in schemas), (path, parameter)
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize(("error_dict", "expected"), [
    ({"type": "int_parsing", "loc": ("query", "n"), "input": "x" * 100}, "n: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... "
                                                                          "is not a whole number"),
    ({"type": "string_pattern_mismatch", "loc": ("body", "service"), "input": "a\nb", "ctx": {}},
     "service: 'a\\nb' is not a valid name: use 1-40 lowercase letters, digits and '-', starting with a letter "
     "(e.g. service: a-b)"),
    ({"type": "value_error", "loc": ("body", "path"), "input": "x", "ctx": {"error": "is\nbad"}}, "path: is\\nbad"),
    ({"type": "missing", "loc": ("body",), "input": None}, "request body: missing"),
])
def test_describe_keeps_every_message_on_one_short_line(error_dict: dict[str, Any], expected: str) -> None:
    assert describe(error_dict) == expected
