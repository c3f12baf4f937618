"""The resource-use route: each replica's CPU and memory samples over a window, and the starts, exits and
scheduled restarts of that window, for charts that draw both on one time axis (the dashboard's).

GET /v1/services/{service}/usage?project=&since=&replica=. The local engine samples every 10 s × time scale
and keeps 24 h × time scale (state/usage.py); a project on a Kubernetes target has no samples (metrics-server
is not read), and the answer says so with `available: false`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stackblaze.engine.protocol import usage_interval
from stackblaze.server import views
from stackblaze.server.boundary import Replica, Since
from stackblaze.server.control import Control
from stackblaze.spec.targets import LOCAL, split_key
from stackblaze.state.usage import UsageStore

WINDOW = 3600.0  # the default window: the last hour (× time scale), what the service page draws


class UsageSeries(BaseModel):
    replica: int
    at: list[float] = Field(description="Unix times of the samples, oldest first.")
    cpu: list[float | None] = Field(description="Percent of one core since the previous sample (null: unknown).")
    memory: list[int | None] = Field(description="Bytes (cgroup memory, or the process tree's RSS).")


class UsageMark(BaseModel):
    at: float
    replica: int | None
    kind: str = Field(description="start, exit, restart-scheduled or start-failed")
    message: str
    code: int | None = None
    signal: str | None = None
    meaning: str | None = None
    oom_killed: bool | None = None
    restart_at: float | None = None


class UsageAnswer(BaseModel):
    project: str
    service: str
    since: float
    until: float
    interval: float = Field(description="Seconds between two samples of a replica.")
    available: bool = Field(description="False where resource use is not collected (a Kubernetes target).")
    note: str | None = None
    replicas: list[UsageSeries]
    events: list[UsageMark]


def usage_answer(control: Control, table: UsageStore, project: str | None, service: str, *,
                 since: float | None = None, replica: int | None = None) -> UsageAnswer:
    """What the route answers; the dashboard's service page draws the same answer."""
    name = control.resolve(project)
    control.row(name, service)
    now = time.time()
    start = now - WINDOW * control.settings.time_scale if since is None else since
    series = table.series(name, service, since=start, replica=replica)
    if replica is not None:
        views.check_replica(control, name, service, replica, has_logs=bool(series))
    local = split_key(name)[1] == LOCAL
    marks: list[dict[str, Any]] = table.marks(name, service, since=start, replica=replica)
    return UsageAnswer(
        project=name, service=service, since=start, until=now,
        interval=usage_interval(control.settings.time_scale), available=local,
        note=None if local else "resource use is not collected on a Kubernetes target (n/a)",
        replicas=[UsageSeries(replica=number, **columns) for number, columns in sorted(series.items())],
        events=[UsageMark(**mark) for mark in marks])


def router(control: Control) -> APIRouter:
    routes = APIRouter()
    table = UsageStore(control.store)

    @routes.get("/v1/services/{service}/usage")
    async def usage(service: str, project: str | None = None, since: Since = None,
                    replica: Replica = None) -> UsageAnswer:
        """Each replica's CPU and memory since `since` (default: the last hour × time scale), with the
        service's starts, exits and scheduled restarts in that window."""
        return usage_answer(control, table, project, service, since=since, replica=replica)

    return routes
