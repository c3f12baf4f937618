"""The cron API (`stackblaze cron ...`, `logs NAME --run N`) and the cron part of `ps`."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from stackblaze.engine.cron import CronEngine
from stackblaze.engine.schedule import next_tick
from stackblaze.errors import ConflictError, NotFoundError, UserError
from stackblaze.server.boundary import MAX_NUMBER
from stackblaze.server.control import Control
from stackblaze.server.cron_desired import is_cron
from stackblaze.spec.cron import Cron
from stackblaze.state.cron import CronStore
from stackblaze.state.store import ServiceRow

RunNumber = Annotated[int, Path(ge=1, le=MAX_NUMBER, description="The run's number (stackblaze cron list).")]


def _cron_row(control: Control, project: str, service: str) -> ServiceRow:
    row = control.row(project, service)
    if not is_cron(row.spec):
        crons = [r.name for r in control.store.services(project) if is_cron(r.spec)]
        raise UserError(f"{service}: not a cron service (it is a {row.spec.get('type', 'worker')}; cron services: "
                        f"{', '.join(crons) or 'none'}; e.g. type: cron with schedule: '0 3 * * *')")
    return row


def cron_view(control: Control, project: str, row: ServiceRow) -> dict[str, Any]:
    """One cron service as `cron list` and `ps` show it: schedule, state, next run, last run."""
    cron = Cron(**row.spec["cron"])
    store = CronStore.of(control.store)
    suspended = store.suspended(project, row.name)
    engine = control.engine_for(project)
    if isinstance(engine, CronEngine):
        next_run = engine.next_run(project, row.name)
        active = engine.active_runs(project, row.name)
    else:  # a cluster's CronJob controller schedules it: the schedule says when
        active = []
        next_run = None if suspended or not row.running else next_tick(cron.schedule, cron.timezone, time.time())
    runs = store.runs(project, row.name, limit=cron.history)
    last = next((r for r in runs if r.ended is not None), None)
    state = ("suspended" if suspended else "stopped" if not row.running else
             f"running (run {', '.join(map(str, active))})" if active else "scheduled")
    return {"service": row.name, "schedule": cron.schedule, "timezone": cron.timezone,
            "concurrency": cron.concurrency, "timeout": cron.timeout, "retries": cron.retries,
            "catch_up": cron.catch_up, "history": cron.history, "suspended": suspended, "running": active,
            "state": state, "next_run": next_run, "last_run": last.to_dict() if last else None,
            "release": row.release}


def router(control: Control) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/cron")
    async def cron_list(project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        return {"project": name, "services": [cron_view(control, name, row) for row in control.store.services(name)
                                              if is_cron(row.spec)]}

    @api.post("/v1/cron/{service}/run")
    async def cron_run(service: str, project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        _cron_row(control, name, service)
        engine = control.engine_for(name)
        if not isinstance(engine, CronEngine):
            raise ConflictError(f"cron run {service}: on a cluster target the CronJob controller runs it; start one "
                                f"now with kubectl create job --from=cronjob/<project>-{service} <job-name>")
        row = await engine.run_now(name, service)
        return {"service": service, "run": row.number, "started": row.started, "log_path": row.log_path}

    async def suspend(project: str | None, service: str, value: bool) -> dict[str, Any]:
        name = control.resolve(project)
        _cron_row(control, name, service)
        CronStore.of(control.store).suspend(name, service, value)
        verb = "suspended" if value else "resumed"
        control.event(project=name, service=service, kind="cron-suspend" if value else "cron-resume",
                      message=f"{service}: {verb} (" + ("no tick runs until: stackblaze cron resume "
                                                        f"{service})" if value else "ticks run again)"),
                      details={"suspended": value})
        await control.engine_for(name).reconcile(name, service)
        return {"service": service, "suspended": value}

    @api.post("/v1/cron/{service}/suspend")
    async def cron_suspend(service: str, project: str | None = None) -> dict[str, Any]:
        return await suspend(project, service, True)

    @api.post("/v1/cron/{service}/resume")
    async def cron_resume(service: str, project: str | None = None) -> dict[str, Any]:
        return await suspend(project, service, False)

    @api.get("/v1/cron/{service}/runs")
    async def cron_runs(service: str, project: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        name = control.resolve(project)
        _cron_row(control, name, service)
        return {"service": service, "runs": [r.to_dict() for r in
                                             CronStore.of(control.store).runs(name, service, limit=limit)]}

    @api.get("/v1/cron/{service}/runs/{run}")
    async def cron_one(service: str, run: RunNumber, project: str | None = None) -> dict[str, Any]:
        name = control.resolve(project)
        _cron_row(control, name, service)
        store = CronStore.of(control.store)
        found = store.run(name, service, run)
        if found is None:
            kept = [r.number for r in store.runs(name, service, limit=1000)]
            span = f"{min(kept)}..{max(kept)}" if kept else "none yet"
            raise NotFoundError(f"{service}: run {run} is not kept (runs kept: {span}; see: stackblaze cron list)")
        return found.to_dict()

    return api
