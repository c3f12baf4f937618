"""The drains API (`stackblaze drains ...`) and the wiring of the drain manager into the daemon.

Drain URLs carry credentials: every response masks them; only the manager sees the real URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Path, Request
from pydantic import BaseModel, Field

from stackblaze.errors import NotFoundError
from stackblaze.logs.drains.manager import DrainConfig, DrainManager, RetryPolicy
from stackblaze.logs.drains.sink import DeliveryError
from stackblaze.logs.drains.url import mask_url, parse_url
from stackblaze.server.boundary import MAX_NUMBER
from stackblaze.server.control import Control
from stackblaze.spec.fields import NAME_PATTERN
from stackblaze.state.drains import DrainRow, DrainStore


class DrainRequest(BaseModel):
    url: str = Field(min_length=1, max_length=4096)
    service: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=40)


DrainId = Annotated[int, Path(ge=1, le=MAX_NUMBER, description="The drain's ID (stackblaze drains list).")]


@dataclass(frozen=True)
class Drains:
    manager: DrainManager
    table: DrainStore


async def start_drains(app: FastAPI, control: Control) -> DrainManager:
    """Create the manager, resume every saved drain from its cursors, and make both reachable to the routes."""
    settings = control.settings
    table = DrainStore(control.store)
    manager = DrainManager(
        logs_dir=control.log_dir, holds_dir=settings.home / "drains", store=table, record_event=control.event,
        retry=RetryPolicy(first=settings.scaled(0.5), cap=settings.scaled(30.0)),
    )
    app.state.drains = Drains(manager, table)
    for row in table.all():
        await manager.start(config_of(row))
    return manager


def config_of(row: DrainRow) -> DrainConfig:
    return DrainConfig(id=row.id, project=row.project, service=row.service, url=row.url,
                       failing_since=row.failing_since, last_error=row.last_error)


async def describe(drains: Drains, row: DrainRow) -> dict[str, Any]:
    """A drain as the API (and the dashboard's Settings → Log Drains) shows it: URL masked, counters."""
    behind = await drains.manager.behind(row.id)
    failing_since, error = drains.manager.health(row.id)
    return {
        "id": row.id, "project": row.project, "service": row.service, "url": mask_url(row.url),
        "scheme": urlsplit(row.url).scheme, "created_at": row.created_at,
        "state": "stopped" if behind is None else ("failing" if failing_since is not None else "ok"),
        **row.counters(), "behind": behind, "last_error": error if behind is not None else row.last_error,
        "failing_since": failing_since if behind is not None else row.failing_since,
        "last_sent_at": row.last_sent_at,
    }


def router(control: Control) -> APIRouter:
    api = APIRouter()

    def drains_of(request: Request) -> Drains:
        found: Drains = request.app.state.drains
        return found

    def resolve(drains: Drains, project: str | None) -> str:
        # A destroyed project's drains can still be listed and removed.
        if project is not None and project in drains.table.projects():
            return project
        return control.resolve(project)

    def row_of(drains: Drains, drain_id: int, project: str | None) -> DrainRow:
        row = drains.table.get(drain_id)
        if row is None or (project is not None and row.project != project):
            raise NotFoundError(f"drain {drain_id} not found (see: stackblaze drains list)")
        return row

    @api.get("/v1/drains")
    async def drains_list(request: Request, project: str | None = None) -> dict[str, Any]:
        drains = drains_of(request)
        name = resolve(drains, project)
        return {"project": name, "drains": [await describe(drains, row) for row in drains.table.all(name)]}

    @api.post("/v1/drains")
    async def drains_add(request: Request, body: DrainRequest, project: str | None = None) -> dict[str, Any]:
        drains = drains_of(request)
        name = control.resolve(project)
        if body.service is not None:
            control.row(name, body.service)
        url = parse_url(body.url)
        row = drains.table.add(project=name, service=body.service, url=url.raw)
        await drains.manager.start(config_of(row), from_now=True)
        control.event(project=name, service=body.service, kind="drain", message=f"drain {row.id} added: {url.masked}",
                      details={"drain": row.id, "url": url.masked})
        return await describe(drains, row)

    @api.delete("/v1/drains/{drain_id}")
    async def drains_remove(request: Request, drain_id: DrainId, project: str | None = None) -> dict[str, Any]:
        drains = drains_of(request)
        row = row_of(drains, drain_id, project)
        await drains.manager.stop(row.id, forget=True)
        drains.table.delete(row.id)
        control.event(project=row.project, service=row.service, kind="drain",
                      message=f"drain {row.id} removed: {mask_url(row.url)}", details={"drain": row.id})
        return {"id": row.id, "removed": True, "url": mask_url(row.url), **row.counters()}

    @api.post("/v1/drains/{drain_id}/test")
    async def drains_test(request: Request, drain_id: DrainId, project: str | None = None) -> dict[str, Any]:
        drains = drains_of(request)
        row = row_of(drains, drain_id, project)
        config = config_of(row)
        try:
            await drains.manager.test(config, message=f"stackblaze: test message for drain {row.id} of "
                                                      f"project {row.project}")
        except (DeliveryError, OSError, ValueError) as exc:
            return {"id": row.id, "url": config.masked, "ok": False, "error": str(exc)}
        return {"id": row.id, "url": config.masked, "ok": True, "error": None}

    return api
