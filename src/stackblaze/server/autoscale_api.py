"""The autoscale API: `autoscale why SERVICE` (the decisions in words), `autoscale status`, `scale --auto`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from stackblaze.server.autoscale_spec import autoscale_of
from stackblaze.server.control import Control


def router(control: Control) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/services/{service}/autoscale")
    async def why(service: str, project: str | None = None,
                  n: Annotated[int, Query(ge=1, le=200, description="How many decisions, newest first.")] = 20
                  ) -> dict[str, Any]:
        name = control.resolve(project)
        return {"project": name, **control.autoscaler.why(name, service, n)}

    @api.get("/v1/autoscale")
    async def status(project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        services = [{"service": row.name, **(control.autoscaler.view(name, row) or {})}
                    for row in control.store.services(name) if autoscale_of(row.spec) is not None]
        return {"project": name, "services": services}

    @api.post("/v1/services/{service}/autoscale-resume")
    async def resume(service: str, project: str | None = None) -> dict[str, Any]:
        return await control.autoscaler.resume(control.resolve(project), service)

    return api
