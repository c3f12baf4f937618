"""The dashboard: a TCP listener with a token in front of the daemon's API, and the pages it serves.

`install(app, control)` adds the routes (POST /v1/dashboard, GET /v1/logs/stream, the pages); the unix
socket serves them tokenless, the TCP listener (started by POST /v1/dashboard) only with the token.
"""

from __future__ import annotations

from fastapi import FastAPI

from stackblaze.server.control import Control
from stackblaze.server.dashboard import listener, pages, sse


def install(app: FastAPI, control: Control) -> None:
    app.state.dashboard = listener.Dashboard(app)
    app.include_router(listener.router())
    app.include_router(sse.router(control))
    app.include_router(pages.router(control))


async def close(app: FastAPI) -> None:
    """Stop the TCP listener, if one was started (the daemon is stopping)."""
    dashboard: listener.Dashboard = app.state.dashboard
    await dashboard.close()
