"""What the API checks before a route runs, and how it says no: names, numbers, body size, error answers.

Every refusal is `{"error": "<one line>", "kind": "<error class>"}` with the status of errors.ERROR_KINDS;
the OpenAPI document lists them (400, 404, 409, 413, 503) so that a client generated from it, or
schemathesis, knows every answer the daemon gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackblaze.errors import SpecError, StackblazeError, UserError, kind_of
from stackblaze.spec.fields import NAME_PATTERN, check_name
from stackblaze.spec.messages import one_line, show
from stackblaze.spec.targets import check_target_name

MAX_BODY = 1 << 20  # the largest request body: a spec path, an env change (env is ~1 MiB at most), a URL
NAME_PARAMS = ("service", "project")  # wherever they come (path or query), they are names
MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a log time can say
MAX_LINES = 10_000_000
MAX_EVENTS = 100_000
MAX_NUMBER = 2**63 - 1  # SQLite's integers

# Numbers as query parameters: anything else is a 400 naming the parameter, never an overflow in a route.
Since = Annotated[float | None, Query(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False,
                                      description="Unix time; only log lines at or after it.")]
Lines = Annotated[int | None, Query(ge=0, le=MAX_LINES, description="The last N lines (with since: of those).")]
EventLimit = Annotated[int, Query(ge=1, le=MAX_EVENTS)]
Replica = Annotated[int | None, Query(ge=1, le=MAX_NUMBER)]
ReleaseNumber = Annotated[int | None, Query(ge=1, le=MAX_NUMBER)]


class ErrorAnswer(BaseModel):
    error: str
    kind: str


def _answer(description: str) -> dict[str, Any]:
    return {"model": ErrorAnswer, "description": description}


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _answer("Bad input: a name, number or body field outside what is accepted (the error says which)"),
    404: _answer("No such project, service, release, drain or env var"),
    409: _answer("The request contradicts the current state (e.g. nothing deployed yet)"),
    413: _answer(f"The request body is larger than {MAX_BODY} bytes"),
    503: _answer("The runner cannot be reached"),
    507: _answer("The disk under STACKBLAZE_HOME is full: free space and retry"),
}
NDJSON: dict[int | str, dict[str, Any]] = {
    200: {"description": "NDJSON, one object per line", "content": {"application/x-ndjson": {}}}}


class BodyTooLarge(HTTPException):
    """Raised from the body reader: FastAPI lets an HTTPException out of its body parsing as it is."""

    def __init__(self) -> None:
        super().__init__(413, f"request body: larger than {MAX_BODY} bytes (the API takes at most 1 MiB)")


class BodyLimit:
    """Answers 413 to a body over `limit` bytes: at once when Content-Length says so, else as soon as the
    bytes read pass it (a chunked body), so no request holds more than `limit` bytes in the daemon."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _refusal(BodyTooLarge())(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)


def _refusal(exc: HTTPException) -> JSONResponse:
    kind = "NotFoundError" if exc.status_code == 404 else "UserError"
    return JSONResponse({"error": one_line(str(exc.detail)), "kind": kind}, status_code=exc.status_code,
                        headers=exc.headers)


def describe(error: dict[str, Any]) -> str:
    """One pydantic/FastAPI validation error as a user's one line: `<where>: <value> <what is wrong>`."""
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path"):  # where FastAPI found it, not part of the name
        loc = loc[1:]
    where = ".".join(loc) or "request body"
    value, kind, ctx = error.get("input"), error.get("type", ""), error.get("ctx") or {}
    if loc and loc[-1] in NAME_PARAMS and kind in ("string_pattern_mismatch", "string_too_long", "string_type"):
        try:
            check_name(value, where=where, key=loc[-1])
        except SpecError as exc:
            return str(exc)
    if kind == "json_invalid":
        return f"request body: not valid JSON ({ctx.get('error', 'decode error')})"
    if kind == "missing":
        return f"{where}: missing"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return f"{where}: {show(value)} is not a JSON object (send one, with Content-Type: application/json)"
    if kind == "value_error":
        return one_line(f"{where}: {ctx.get('error', error.get('msg', 'is invalid'))}")
    if kind in ("int_parsing", "int_from_float"):
        return f"{where}: {show(value)} is not a whole number"
    if kind in ("float_parsing", "finite_number"):
        return f"{where}: {show(value)} is not a finite number"
    if kind in ("less_than_equal", "greater_than_equal"):
        bound = ctx.get("le", ctx.get("ge"))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "at most 253402300799", not "...799.0"
        return f"{where}: {show(value)} must be at {'most' if 'le' in ctx else 'least'} {bound}"
    message = str(error.get("msg", "is invalid"))
    return one_line(f"{where}: {show(value)} {message[:1].lower()}{message[1:]}")


async def check_names(request: Request) -> None:
    """Every `service` and `project` path or query parameter of every route matches the name grammar (the
    one in spec.fields): a name never reaches the store, a path or a log folder unchecked."""
    for key in NAME_PARAMS:
        for value in [request.path_params.get(key), *request.query_params.getlist(key)]:
            if value is None:
                continue
            if key == "project" and "@" in value:  # `acme@prod` (a project on a target), `@prod` (the one there)
                name, _, target = value.partition("@")
                if name:
                    check_name(name, where=key, key=key)
                check_target_name(target, where="--target")
            else:
                check_name(value, where=key, key=key)


def install(app: FastAPI) -> None:
    """The error answers, the body cap and an OpenAPI document that lists them (FastAPI's own 422 is never
    sent: a validation error is a 400 here)."""
    app.add_middleware(BodyLimit, limit=MAX_BODY)

    @app.exception_handler(StackblazeError)
    async def on_error(request: Request, exc: StackblazeError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "kind": type(exc).__name__}, status_code=kind_of(exc).http_status)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = describe(errors[0]) if errors else "request: invalid"
        return JSONResponse({"error": message, "kind": "UserError"}, status_code=kind_of(UserError()).http_status)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        return _refusal(exc)

    app.openapi = _openapi(app)  # type: ignore[method-assign]


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for operation in _operations(schema):
                operation.get("responses", {}).pop("422", None)
                for parameter in operation.get("parameters", []):
                    if parameter.get("name") in NAME_PARAMS:  # what check_names holds them to
                        _as_name(parameter.get("schema", {}))
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = json.loads(json.dumps(schema))
        return app.openapi_schema
    return build


def _as_name(schema: dict[str, Any]) -> None:
    for each in schema.get("anyOf", [schema]):
        if each.get("type") == "string":
            each.update(pattern=NAME_PATTERN, maxLength=40)


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in schema.get("paths", {}).values() for op in item.values() if isinstance(op, dict)]
