"""GET /v1/logs/stream: a service's (or the project's) log lines as server-sent events, for the browser's
EventSource. The same records and filters as /v1/logs, read through the same LiveFollower (inotify)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from stackblaze.logs.follow import LiveFollower
from stackblaze.logs.reader import find_logs, last_records
from stackblaze.logs.structured import LogFilter, record_dict
from stackblaze.server import views
from stackblaze.server.boundary import Replica
from stackblaze.server.control import Control

KEEPALIVE = 15.0  # seconds between comments on a quiet stream: a proxy or a dead peer is noticed
SSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "text/event-stream: one `data: <log record JSON>` event per line",
          "content": {"text/event-stream": {}}}}


def event(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def router(control: Control) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/logs/stream", response_class=StreamingResponse, responses=SSE)
    async def stream(project: str | None = None, service: str | None = None, replica: Replica = None,
                     n: Annotated[int, Query(ge=0, le=10_000, description="Lines of backlog first.")] = 200,
                     level: str | None = None, grep: str | None = None) -> StreamingResponse:
        """The last `n` lines, then every new line as it is written (never ends)."""
        name = control.resolve(project)
        if service is not None:
            control.row(name, service)
        wanted = LogFilter.build(level=level, grep=grep, fields=[])
        project_dir = control.log_dir(name)
        if replica is not None:
            views.check_replica(control, name, service, replica,
                                has_logs=bool(find_logs(project_dir, service, replica)))
        follower = LiveFollower(project_dir, service, replica)
        keep = (lambda record: wanted.matches(record_dict(record))) if wanted.active else None
        found = find_logs(project_dir, service, replica)

        def backlog() -> bytes:
            return b"".join(event(record_dict(r)) for r in
                            last_records(found, n, since="", keep=keep, limits=follower.limits))

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b": stackblaze log stream\n\n" + await asyncio.to_thread(backlog)
                quiet_since = time.monotonic()
                while True:
                    fresh = [p for p in map(record_dict, follower.poll()) if wanted.matches(p)]
                    if fresh:
                        yield b"".join(map(event, fresh))
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since > KEEPALIVE:
                        yield b": keepalive\n\n"
                        quiet_since = time.monotonic()
                    await follower.wait()
            finally:
                follower.close()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    return routes
