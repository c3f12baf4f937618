"""The daemon's HTTP API (FastAPI), served on a unix socket; the CLI is its main client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from itertools import islice
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

from stackblaze.build.builder import BuildFailed
from stackblaze.errors import StackblazeError, kind_of
from stackblaze.logs.follow import LiveFollower
from stackblaze.logs.reader import find_logs, last_records
from stackblaze.logs.record import format_time
from stackblaze.logs.structured import LogFilter, record_dict
from stackblaze.server import autoscale_api, boundary, cron_api, dashboard, doctor_api, drains_api, usage_api, views
from stackblaze.server.boundary import NDJSON, EventLimit, Lines, ReleaseNumber, Replica, Since
from stackblaze.server.control import Control
from stackblaze.server.env_checks import check_env_change
from stackblaze.spec.fields import ENV_STRING_MAX, NAME_PATTERN

BATCH = 1000  # log records encoded per step of a backlog (one worker-thread hop, one write)
MAX_PATH = 4096  # PATH_MAX


class DeployRequest(BaseModel):
    path: str = Field(min_length=1, max_length=MAX_PATH, description="The project directory, absolute.")
    # the CLI's PATH: tools are looked up there; None: the daemon's
    env_path: str | None = Field(default=None, max_length=ENV_STRING_MAX)
    detach: bool = False  # return once the rollouts started instead of waiting for them
    # where: a target of the spec's `targets:` (None: local), and flags over its settings
    target: str | None = Field(default=None, max_length=40)
    context: str | None = Field(default=None, max_length=253)
    namespace: str | None = Field(default=None, max_length=63)
    registry: str | None = Field(default=None, max_length=255)

    @field_validator("path", "env_path")
    @classmethod
    def _usable(cls, value: str | None, info: Any) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("contains a NUL character")
        if info.field_name == "path" and value is not None and not value.startswith("/"):
            raise ValueError(f"{value[:40]!r} is not an absolute path (the CLI sends the directory resolved)")
        return value


class RollbackRequest(BaseModel):
    release: int | None = Field(default=None, ge=1, le=boundary.MAX_NUMBER)


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=1000)


class EnvRequest(BaseModel):
    """Keys and values are checked by env_checks (grammar, NUL, sizes, the whole environment)."""
    set: dict[str, str] = {}
    unset: list[str] = []
    secret: bool = False
    service: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=40)


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
        except Exception as exc:  # a bug, not the request: the stream still ends with one line, not cut off
            logging.getLogger("stackblaze.api").exception("a streamed request failed")
            return {"error": f"the daemon failed: {type(exc).__name__}: {exc} (the traceback is in daemon.log)",
                    "kind": "StackblazeError", "status": 500}
        finally:
            loop.call_soon_threadsafe(lines.put_nowait, None)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        task = asyncio.create_task(finish())
        while (line := await lines.get()) is not None:
            yield {"progress": line}
        yield await task
    return ndjson(stream())


def encoded(items: Iterator[dict[str, Any]], count: int) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in islice(items, count))


async def in_thread(items: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """NDJSON of `items`, read and encoded in a worker thread BATCH at a time: a big backlog never blocks
    the loop (which must keep answering /v1/status) and never sits in memory whole."""
    while chunk := await asyncio.to_thread(encoded, items, BATCH):
        yield chunk


def create_app(control: Control, *, on_shutdown: Callable[[bool], None]) -> FastAPI:
    app = FastAPI(title="stackblaze", docs_url=None, redoc_url=None, responses=boundary.RESPONSES,
                  dependencies=[Depends(boundary.check_names)])
    boundary.install(app)

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        return {"pid": os.getpid(), "home": str(control.settings.home),
                "time_scale": control.settings.time_scale, "projects": control.store.project_names()}

    @app.post("/v1/deploy", responses=NDJSON)
    async def deploy(body: DeployRequest) -> StreamingResponse:
        """NDJSON: {"progress": line} while building and rolling out, then {"result": ...} or {"error": ...,
        "cause": [...], "tail": [...]}."""
        async def run(progress: Callable[[str], None]) -> dict[str, Any]:
            try:
                return {"result": await control.deploy(
                    body.path, progress, path_env=body.env_path, detach=body.detach,
                    target=(body.target, body.context, body.namespace, body.registry))}
            except BuildFailed as exc:
                where = f"{exc.service}: " if exc.service else ""
                return {"error": f"{where}{exc}", "kind": "BuildFailed", "cause": exc.cause, "tail": exc.tail,
                        "log_path": str(exc.log_path)}
            except StackblazeError as exc:
                # a stream's status is already 200: the row's status says what the error is
                return {"error": str(exc), "kind": type(exc).__name__, "status": kind_of(exc).http_status}
        return progress_stream(run)

    @app.get("/v1/rollout", responses=NDJSON)
    async def rollout(project: str | None = None, service: str | None = None) -> StreamingResponse:
        """NDJSON, as a deploy reports it: {"progress": line} while rollouts go on, then {"result": ...}."""
        name = control.resolve(project)
        names = [control.row(name, service).name] if service else [r.name for r in control.store.services(name)]
        started = {each: control.engine_for(name).rollout(name, each) for each in names}

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
    async def build_log(service: str, project: str | None = None, release: ReleaseNumber = None) -> dict[str, Any]:
        number, text = control.build_log(control.resolve(project), service, release)
        return {"service": service, "release": number, "log": text}

    @app.get("/v1/services/{service}/previous")
    async def previous(service: str, project: str | None = None, replica: Replica = None,
                       n: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
        """What each replica (or one) printed in its run before the current one: the local engine's last exit
        lines, a pod's previous container log (`kubectl logs --previous`)."""
        name = control.resolve(project)
        row = control.row(name, service)
        numbers = [replica] if replica is not None else list(range(1, row.replicas + 1))
        engine = control.engine_for(name)
        return {"service": service, "replicas": [
            {"replica": number, "lines": await engine.logs.previous(name, service, number, n)} for number in numbers]}

    @app.get("/v1/ps")
    async def ps(project: str | None = None, service: str | None = None, all: bool = False) -> dict[str, Any]:
        return views.ps(control, views.scope(control, project, all), service)

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
    async def destroy(project: str | None = None, disks: bool = False) -> dict[str, Any]:
        return await control.destroy(control.resolve(project), disks=disks)

    @app.get("/v1/env")
    async def env_list(project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project, deployed=False)
        return {"project": name, "env": control.env_list(name)}

    @app.post("/v1/env")
    async def env_change(body: EnvRequest, project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project, deployed=False)
        check_env_change(control, name, service=body.service, set_values=body.set, unset=body.unset)
        return await control.env_change(name, service=body.service,
                                        set_values=body.set, unset=body.unset, secret=body.secret)

    @app.get("/v1/events", response_model=None, responses=NDJSON)
    async def events(project: str | None = None, service: str | None = None, limit: EventLimit = 50,
                     follow: bool = False, all: bool = False) -> dict[str, Any] | StreamingResponse:
        names = views.scope(control, project, all)
        if service is not None:
            views.check_service(control, names, service, history=True)
        name = None if all else names[0]  # None: every project's events
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

    @app.get("/v1/logs", response_model=None, responses=NDJSON)
    async def logs(project: str | None = None, service: str | None = None, replica: Replica = None,
                   n: Lines = None, since: Since = None, follow: bool = False, level: str | None = None,
                   grep: str | None = None, field: Annotated[list[str] | None, Query()] = None,
                   ) -> StreamingResponse:
        name = control.resolve(project)
        if service is not None:
            control.row(name, service)
        wanted = LogFilter.build(level=level, grep=grep, fields=field or [])
        project_dir = control.log_dir(name)
        if replica is not None:  # before the follower opens files: a 404 leaves nothing open
            views.check_replica(control, name, service, replica,
                                has_logs=bool(find_logs(project_dir, service, replica)))
        follower = LiveFollower(project_dir, service, replica) if follow else None  # woken by inotify
        limits = follower.limits if follower else None
        found = find_logs(project_dir, service, replica)
        n = n if n is not None else (None if since is not None else 100)  # --since alone: every line since
        keep = (lambda record: wanted.matches(record_dict(record))) if wanted.active else None
        # Streamed as read (logs.reader.last_records), in a worker thread: `-n 1000000` holds one batch.
        backlog = map(record_dict, last_records(found, n, since="" if since is None else format_time(since),
                                                keep=keep, limits=limits))

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in in_thread(backlog):
                    yield chunk
                while follower is not None:
                    fresh = [p for p in map(record_dict, follower.poll()) if wanted.matches(p)]
                    if fresh:
                        yield encoded(iter(fresh), len(fresh))
                    await follower.wait()
            finally:
                if follower is not None:
                    follower.close()
        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @app.post("/v1/shutdown")
    async def shutdown(body: ShutdownRequest) -> dict[str, Any]:
        on_shutdown(body.all)
        return {"stopping": True, "workers": "stopping" if body.all else "left running"}

    app.include_router(drains_api.router(control))
    app.include_router(usage_api.router(control))
    app.include_router(cron_api.router(control))
    app.include_router(autoscale_api.router(control))
    app.include_router(doctor_api.router(control))
    dashboard.install(app, control)  # POST /v1/dashboard, GET /v1/logs/stream, the pages
    return app
