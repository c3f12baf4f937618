"""The daemon's HTTP API (FastAPI), served on a unix socket; the CLI is its main client."""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from stackblaze.build.builder import BuildFailed
from stackblaze.errors import StackblazeError, UserError, kind_of
from stackblaze.logs.reader import Follower, find_logs, records_since, tail_records
from stackblaze.logs.record import format_time
from stackblaze.logs.structured import LogFilter, record_dict
from stackblaze.server import drains_api
from stackblaze.server.control import Control

FOLLOW_INTERVAL = 0.05


class DeployRequest(BaseModel):
    path: str
    env_path: str | None = None  # the CLI's PATH: tools are looked up there; None: the daemon's
    detach: bool = False  # return once the rollouts started instead of waiting for them


class RollbackRequest(BaseModel):
    release: int | None = None


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=1000)


class EnvRequest(BaseModel):
    set: dict[str, str] = {}
    unset: list[str] = []
    secret: bool = False
    service: str | None = None


class ShutdownRequest(BaseModel):
    all: bool = False


def ndjson(items: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for item in items:
            yield json.dumps(item).encode() + b"\n"
    return StreamingResponse(body(), media_type="application/x-ndjson")


def progress_stream(run: Callable[[Callable[[str], None]], Awaitable[dict[str, Any]]]) -> StreamingResponse:
    """NDJSON of {"progress": line} for each line `run` reports (from any thread), then what it returns."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def progress(line: str) -> None:  # a deploy calls it from its build thread
        loop.call_soon_threadsafe(lines.put_nowait, line)

    async def finish() -> dict[str, Any]:
        try:
            return await run(progress)
        finally:
            loop.call_soon_threadsafe(lines.put_nowait, None)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        task = asyncio.create_task(finish())
        while (line := await lines.get()) is not None:
            yield {"progress": line}
        yield await task
    return ndjson(stream())


def create_app(control: Control, *, on_shutdown: Callable[[bool], None]) -> FastAPI:
    app = FastAPI(title="stackblaze", docs_url=None, redoc_url=None)

    @app.exception_handler(StackblazeError)
    async def on_error(request: Request, exc: StackblazeError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "kind": type(exc).__name__}, status_code=kind_of(exc).http_status)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        value = first.get("input")
        message = f"{where}: {value!r} {first.get('msg', 'is invalid').lower()}"
        return JSONResponse({"error": message, "kind": "UserError"}, status_code=kind_of(UserError()).http_status)

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return {"pid": os.getpid(), "home": str(control.settings.home),
                "time_scale": control.settings.time_scale, "projects": control.store.project_names()}

    @app.post("/v1/deploy")
    async def deploy(body: DeployRequest) -> StreamingResponse:
        """NDJSON: {"progress": line} while building and rolling out, then {"result": ...} or {"error": ...,
        "cause": [...], "tail": [...]}."""
        async def run(progress: Callable[[str], None]) -> dict[str, Any]:
            try:
                return {"result": await control.deploy(body.path, progress, path_env=body.env_path,
                                                       detach=body.detach)}
            except BuildFailed as exc:
                where = f"{exc.service}: " if exc.service else ""
                return {"error": f"{where}{exc}", "kind": "BuildFailed", "cause": exc.cause, "tail": exc.tail,
                        "log_path": str(exc.log_path)}
            except StackblazeError as exc:
                # a stream's status is already 200: the row's status says what the error is
                return {"error": str(exc), "kind": type(exc).__name__, "status": kind_of(exc).http_status}
        return progress_stream(run)

    @app.get("/v1/rollout")
    async def rollout(project: str | None = None, service: str | None = None) -> StreamingResponse:
        """NDJSON, as a deploy reports it: {"progress": line} while rollouts go on, then {"result": ...}."""
        name = control.resolve(project)
        names = [control.row(name, service).name] if service else [r.name for r in control.store.services(name)]
        started = {each: control.engine.rollout(name, each) for each in names}

        async def run(progress: Callable[[str], None]) -> dict[str, Any]:
            outcomes = await control.wait_rollouts(name, started, progress)
            return {"result": {"project": name, "services": outcomes,
                               "ok": all(o["state"] != "failed" for o in outcomes)}}
        return progress_stream(run)

    @app.get("/v1/services/{service}/releases")
    async def releases(service: str, project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        found = control.releases(name, service)
        row = control.store.service(name, service)
        return {"service": service, "current": row.release if row else None,
                "releases": [r.to_dict() for r in found]}

    @app.post("/v1/services/{service}/rollback")
    async def rollback(service: str, body: RollbackRequest, project: str | None = None) -> dict[str, Any]:
        return await control.rollback(control.resolve(project), service, body.release)

    @app.get("/v1/services/{service}/build-log")
    async def build_log(service: str, project: str | None = None, release: int | None = None) -> dict[str, Any]:
        number, text = control.build_log(control.resolve(project), service, release)
        return {"service": service, "release": number, "log": text}

    @app.get("/v1/ps")
    async def ps(project: str | None = None, service: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        if service is not None:
            control.row(name, service)
        services = []
        for row in control.store.services(name):
            if service is not None and row.name != service:
                continue
            replicas = control.engine.status(name, row.name)
            services.append({
                "service": row.name, "desired": row.replicas if row.running else 0, "running_flag": row.running,
                "release": row.release, "start": control.start_command(row), "strategy": row.spec["strategy"],
                "running": sum(1 for r in replicas if r["state"] == "running"), "replicas": replicas,
            })
        return {"project": name, "services": services}

    @app.post("/v1/services/{service}/scale")
    async def scale(service: str, body: ScaleRequest, project: str | None = None) -> dict[str, Any]:
        return await control.scale(control.resolve(project), service, body.replicas)

    @app.post("/v1/services/{service}/restart")
    async def restart(service: str, project: str | None = None) -> dict[str, Any]:
        return await control.restart(control.resolve(project), service)

    @app.post("/v1/services/{service}/stop")
    async def stop(service: str, project: str | None = None) -> dict[str, Any]:
        return await control.set_running(control.resolve(project), service, False)

    @app.post("/v1/services/{service}/start")
    async def start(service: str, project: str | None = None) -> dict[str, Any]:
        return await control.set_running(control.resolve(project), service, True)

    @app.post("/v1/destroy")
    async def destroy(project: str | None = None) -> dict[str, Any]:
        return await control.destroy(control.resolve(project))

    @app.get("/v1/env")
    async def env_list(project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        return {"project": name, "env": control.env_list(name)}

    @app.post("/v1/env")
    async def env_change(body: EnvRequest, project: str | None = None) -> dict[str, Any]:
        return await control.env_change(control.resolve(project), service=body.service,
                                        set_values=body.set, unset=body.unset, secret=body.secret)

    @app.get("/v1/events", response_model=None)
    async def events(project: str | None = None, service: str | None = None, limit: int = 50,
                     follow: bool = False) -> dict[str, Any] | StreamingResponse:
        name = control.resolve(project)
        first = control.store.events(project=name, service=service, limit=limit)
        if not follow:
            return {"project": name, "events": [e.to_dict() for e in first]}

        async def stream() -> AsyncIterator[dict[str, Any]]:
            last = first[-1].id if first else 0
            for item in first:
                yield item.to_dict()
            while True:
                await control.next_event()
                for item in control.store.events(project=name, service=service, after_id=last, limit=1000):
                    last = item.id
                    yield item.to_dict()
        return ndjson(stream())

    @app.get("/v1/logs", response_model=None)
    async def logs(project: str | None = None, service: str | None = None, replica: int | None = None,
                   n: int = 100, since: float | None = None, follow: bool = False, level: str | None = None,
                   grep: str | None = None, field: Annotated[list[str] | None, Query()] = None,
                   ) -> StreamingResponse:
        name = control.resolve(project)
        if service is not None:
            control.row(name, service)
        wanted = LogFilter.build(level=level, grep=grep, fields=field or [])
        project_dir = control.settings.logs_dir / name
        follower = Follower(project_dir, service, replica) if follow else None
        limits = follower.limits if follower else None
        found = find_logs(project_dir, service, replica)
        if since is not None or wanted.active:
            since_text = "" if since is None else format_time(since)
            matching = (p for p in map(record_dict, records_since(found, since_text, limits=limits))
                        if wanted.matches(p))
            backlog = list(deque(matching, maxlen=n)) if since is None else list(matching)
        else:
            backlog = [record_dict(r) for r in tail_records(found, n, limits=limits)]

        async def stream() -> AsyncIterator[dict[str, Any]]:
            try:
                for payload in backlog:
                    yield payload
                while follower is not None:
                    for record in follower.poll():
                        payload = record_dict(record)
                        if wanted.matches(payload):
                            yield payload
                    await asyncio.sleep(FOLLOW_INTERVAL)
            finally:
                if follower is not None:
                    follower.close()
        return ndjson(stream())

    @app.post("/v1/shutdown")
    async def shutdown(body: ShutdownRequest) -> dict[str, Any]:
        on_shutdown(body.all)
        return {"stopping": True, "workers": "stopping" if body.all else "left running"}

    app.include_router(drains_api.router(control))
    return app
