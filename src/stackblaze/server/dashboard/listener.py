"""The dashboard's TCP listener: one more uvicorn server on the daemon's loop, serving the same app behind
the token (auth.TokenGate). Started by POST /v1/dashboard (what `stackblaze dashboard` sends over the unix
socket), stopped with the daemon. One per daemon: asking again answers the running one's URL."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from stackblaze.errors import ConflictError, UserError
from stackblaze.server.dashboard.auth import TokenGate
from stackblaze.server.quiet_server import QuietServer

log = logging.getLogger("stackblaze.dashboard")
LOOPBACK = "127.0.0.1"
HOST_PATTERN = r"^(localhost|[0-9.]{7,15}|[0-9A-Fa-f:.]{2,45})$"  # an IP literal: no name lookup in the daemon


class DashboardRequest(BaseModel):
    host: str = Field(default=LOOPBACK, pattern=HOST_PATTERN, max_length=45,
                      description="The address to listen on; beyond loopback a token must be given.")
    port: int = Field(default=0, ge=0, le=65535, description="0: a free port.")
    token: str | None = Field(default=None, min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_.~-]+$",
                              description="The token to require (default: a random one).")


class DashboardAnswer(BaseModel):
    url: str = Field(description="The URL with the token, to open once (it sets a cookie).")
    host: str
    port: int
    started: bool = Field(description="False: it was already listening.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dashboard:
    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._server: QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.host = LOOPBACK
        self.port = 0
        self.token = ""

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def open(self, host: str, port: int, token: str | None) -> DashboardAnswer:
        if self._server is not None:
            if host == self.host and port in (0, self.port) and token in (None, self.token):
                return DashboardAnswer(url=self.url(), host=self.host, port=self.port, started=False)
            raise ConflictError(f"the dashboard already listens on {self.host}:{self.port}; stop the daemon "
                                f"(stackblaze daemon stop) to listen elsewhere or with another token")
        if not is_loopback(host) and token is None:
            raise UserError(f"--host {host}: listening beyond this machine needs an explicit token (--token "
                            "TOKEN, 16+ characters): anyone who reaches the port with it controls the workers, "
                            "over plain HTTP")
        try:
            ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
        except ValueError:
            raise UserError(f"--host {host!r} is not an IP address (e.g. --host 127.0.0.1)") from None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise ConflictError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); pick "
                                "another port, or leave --port out for a free one") from None
        self.token = token or secrets.token_urlsafe(32)
        self.host, self.port = host, int(sock.getsockname()[1])
        config = uvicorn.Config(TokenGate(self._app, self.token), log_config=None, lifespan="off",
                                access_log=False, timeout_graceful_shutdown=1, date_header=False,
                                server_header=False)
        self._server = QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="dashboard")
        log.info("dashboard listening on %s:%d", self.host, self.port)
        return DashboardAnswer(url=self.url(), host=self.host, port=self.port, started=True)

    async def close(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.stop()
        with contextlib.suppress(Exception):
            await self._task
        self._server = self._task = None


def router() -> APIRouter:
    routes = APIRouter()

    @routes.post("/v1/dashboard")
    async def dashboard(request: Request, body: DashboardRequest) -> DashboardAnswer:
        """Start the dashboard's TCP listener (if it is not running) and answer its URL with the token."""
        found: Dashboard = request.app.state.dashboard
        return await found.open(body.host, body.port, body.token)

    return routes
