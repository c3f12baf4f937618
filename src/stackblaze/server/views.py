"""What the read-only routes answer: `ps` of one project or of every project, and the checks that make a
name that is not there a 404 (an unknown service for `events`, a replica that never existed for `logs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stackblaze.errors import NotFoundError
from stackblaze.server.cron_api import cron_view
from stackblaze.server.cron_desired import is_cron
from stackblaze.server.disks import disk_view
from stackblaze.spec.model import BACKING_TYPES
from stackblaze.spec.targets import LOCAL, split_key

if TYPE_CHECKING:
    from stackblaze.server.control import Control


def scope(control: Control, project: str | None, every: bool) -> list[str]:
    """The projects a view shows: every deployed one (`ps --all`, or no project context at all), else the
    one `resolve` names."""
    return control.store.project_names() if every else [control.resolve(project)]


def ps(control: Control, projects: list[str], service: str | None) -> dict[str, Any]:
    """Each service of `projects` (or only `service`), in project order; `project` is None for every one."""
    if service is not None:
        check_service(control, projects, service, history=False)
    services = []
    for name in projects:
        for row in control.store.services(name):
            if service is not None and row.name != service:
                continue
            replicas = control.engine_for(name).status(name, row.name)
            cron = cron_view(control, name, row) if is_cron(row.spec) else None
            services.append({
                "project": name, "service": row.name, "desired": row.replicas if row.running else 0,
                "running_flag": row.running, "release": row.release, "start": control.start_command(row),
                "strategy": row.spec["strategy"], "running": sum(1 for r in replicas if r["state"] == "running"),
                "replicas": replicas, "type": row.spec.get("type", "worker"),
                **({"address": control.backing.address(name, row.name)}
                   if row.spec.get("type", "worker") in BACKING_TYPES else {}),
                **({"cron": cron, "desired": 0} if cron else {}),  # runs, not replicas: cron_api.cron_view
                **({"autoscale": control.autoscaler.view(name, row)} if row.spec.get("autoscale") else {}),
                **({"disk": disk_view(control.disk_usage, control.settings, name, row.spec,
                                      local=split_key(name)[1] == LOCAL)} if row.spec.get("disk") else {}),
            })
    return {"project": projects[0] if len(projects) == 1 else None, "projects": projects, "services": services}


def check_service(control: Control, projects: list[str], service: str, *, history: bool) -> None:
    """A 404 unless one of `projects` has `service`; with `history`, one removed from the spec that still
    has releases counts (its events are still worth reading)."""
    for name in projects:
        if control.store.service(name, service) is not None or (history and control.store.releases(name, service)):
            return
    where = f"project {projects[0]!r}" if len(projects) == 1 else "any deployed project"
    known = sorted({row.name for name in projects for row in control.store.services(name)})
    raise NotFoundError(f"service {service!r} not found in {where} (services: {', '.join(known) or 'none'})")


def check_replica(control: Control, project: str, service: str | None, replica: int, *, has_logs: bool) -> None:
    """A 404 for a replica number no service runs and none has logs of (`logs worker --replica 9`)."""
    rows = [control.row(project, service)] if service is not None else control.store.services(project)
    if has_logs or any(replica <= row.replicas for row in rows):
        return
    counts = ", ".join(f"{row.name} has {row.replicas}" for row in rows) or "no services"
    raise NotFoundError(f"replica {replica} not found ({counts}; e.g. --replica 1)")
