"""The token in front of the TCP listener: every request needs it, as a cookie or `Authorization: Bearer`.

As Jupyter does, `GET /anything?token=T` with the right token sets an HttpOnly, SameSite=Strict cookie and
redirects to the same URL without it, so the token leaves the address bar and the browser history. A
cookie is sent by the browser on its own, so a request that changes something and is authorised by the
cookie alone must also carry `X-Stackblaze: 1`: a cross-site form cannot set a custom header, and a
cross-site fetch with one needs a CORS preflight this server never grants (CSRF).
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "stackblaze_token"
CSRF_HEADER = "x-stackblaze"
SAFE = ("GET", "HEAD", "OPTIONS")
HOW = "run `stackblaze dashboard` and open the URL it prints (or send Authorization: Bearer <token>)"


class TokenGate:
    """ASGI middleware: the wrapped app only sees requests that carry `token`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    def _valid(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # no route uses one: refused before the app sees it
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method = request.method
        given = request.query_params.get("token")
        if given is not None and method in SAFE:
            if not self._valid(given):
                await _refuse(send, 401, f"the token in the URL is not this dashboard's: {HOW}")
                return
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            clean = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await _answer(send, 303, b"", [(b"location", clean.encode()), (b"set-cookie", cookie.encode())])
            return
        header = request.headers.get("authorization", "")
        scheme, _, bearer = header.partition(" ")
        if scheme.lower() == "bearer" and self._valid(bearer.strip()):
            await self.app(scope, receive, send)
            return
        if self._valid(request.cookies.get(COOKIE)):
            if method not in SAFE and request.headers.get(CSRF_HEADER) != "1":
                await _refuse(send, 403, f"{method} {request.url.path}: a cookie-authorised change needs the header "
                                         "X-Stackblaze: 1 (cross-site requests are refused)")
                return
            await self.app(scope, receive, send)
            return
        await _refuse(send, 401, f"this dashboard needs its token: {HOW}")


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "kind": "Unauthorized" if status == 401 else "Forbidden"}).encode()
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await _answer(send, status, body, headers)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
