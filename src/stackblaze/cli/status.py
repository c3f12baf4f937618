"""Commands that show what runs and what happened: ps, logs, events.

With no project context (no --project, no STACKBLAZE_PROJECT, no project in the current directory) `ps`
and `events` show every project, grouped, as `pm2 ls` does; `ps --all` does so anywhere.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from stackblaze.cli.options import JsonOpt, ProjectOpt, TargetOpt, client, examples, project_here, whole_number
from stackblaze.errors import UserError

app = typer.Typer()
DEFAULT_LINES = 100


def _scope(project: str | None, all_projects: bool = False) -> str | None:
    """The project to show, or None for every project."""
    if all_projects:
        if project:
            raise UserError(f"--all shows every project; --project {project} shows one (pass one of them)")
        return None
    return project_here(project)


@app.command(epilog=examples("stackblaze ps", "stackblaze ps worker", "stackblaze ps --all",
                             "stackblaze ps --json | jq '.services[].replicas[].state'"))
def ps(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    all_projects: Annotated[bool, typer.Option("--all", "-a", help="Every project, wherever you are.")] = False,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Services and replicas: state, restarts, last exit.

    State, pid, uptime, restarts and last exit of each replica; every project, grouped, when none is given
    or found in the current directory (or with --all)."""
    name = _scope(project, all_projects)
    every = (name is None and target is None) or None
    result = client(name, target).request("GET", "/v1/ps", params={"service": service, "all": every})
    from stackblaze.cli import render

    if as_json:
        render.print_json(result)
    elif result["project"] is not None:
        render.ps_table(result)
    elif not result["projects"]:
        render.out.print("nothing is deployed (deploy a project: cd my-app && stackblaze deploy)", markup=False)
    else:
        by_project: dict[str, list[dict[str, Any]]] = {}
        for item in result["services"]:
            by_project.setdefault(item["project"], []).append(item)
        for each in result["projects"]:
            render.out.print(f"project {each}", style="bold underline", markup=False)
            render.ps_table({"project": each, "services": by_project.get(each, [])})


@app.command(epilog=examples("stackblaze logs", "stackblaze logs worker --tail",
                             "stackblaze logs worker --since 10m -n 20",
                             "stackblaze logs worker --replica 2 --level warn", "stackblaze logs worker --build"))
def logs(
    service: Annotated[str | None, typer.Argument(help="Service (default: all).")] = None,
    tail: Annotated[bool, typer.Option("--tail", "-f", "--follow", help="Follow live.")] = False,
    lines: Annotated[str | None, typer.Option(
        "-n", "--lines", help=f"Show the last N lines (default {DEFAULT_LINES}; with --since, all of them).",
        show_default=False)] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only lines newer than this, e.g. 10m, 2h.")] = None,
    replica: Annotated[int | None, typer.Option("--replica", min=1, help="Only this replica.")] = None,
    run: Annotated[int | None, typer.Option("--run", min=1, help="A cron service: only this run (cron list "
                                            "shows the last one; cron run prints its number).")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show each line's time.")] = False,
    level: Annotated[str | None, typer.Option("--level", help="JSON lines at this level and above.")] = None,
    grep: Annotated[str | None, typer.Option("--grep", help="Only lines containing TEXT.")] = None,
    field: Annotated[list[str] | None, typer.Option("--field", help="JSON lines with key=value.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print lines as they were written: JSON lines not reformatted, "
                                      "terminal control characters not escaped.")] = False,
    build: Annotated[bool, typer.Option("--build", help="The service's last build log instead.")] = False,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="Each replica's previous run instead (what "
                                           "it printed before it last exited).")] = False,
    release: Annotated[int | None, typer.Option("--release", help="With --build: that release's log.")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Replicas' logs; --tail follows them.

    Every replica's lines, prefixed `worker.1 |`; JSON lines shown readably."""
    import sys

    from stackblaze.cli import render
    from stackblaze.spec.duration import parse_duration

    if build:
        if service is None:
            raise UserError("logs --build: name the service (e.g. stackblaze logs worker --build)")
        payload = client(project_here(project), target).request("GET", f"/v1/services/{service}/build-log",
                                                        params={"release": release})
        render.print_json(payload) if as_json else sys.stdout.write(payload["log"])
        return
    if previous:
        if service is None:
            raise UserError("logs --previous: name the service (e.g. stackblaze logs worker --previous)")
        last = whole_number(lines, option="-n", low=1, high=10_000) if lines is not None else DEFAULT_LINES
        payload = client(project_here(project), target).request(
            "GET", f"/v1/services/{service}/previous", params={"replica": replica, "n": last})
        if as_json:
            render.print_json(payload)
            return
        for item in payload["replicas"]:
            for line in item["lines"]:
                render.out.print(f"{service}.{item['replica']} | {render.escape_controls(line) if not raw else line}",
                                 markup=False, highlight=False)
        if not any(item["lines"] for item in payload["replicas"]):
            render.err.print(f"{service}: no previous run recorded", markup=False)
        return
    if run is not None:
        if service is None or replica is not None:
            raise UserError("logs --run: name the cron service, without --replica (e.g. stackblaze logs nightly "
                            "--run 12)")
        # A run's log is <service>/<run>.log: the logs route reads it as a replica numbered by the run.
        client(project_here(project), target).request("GET", f"/v1/cron/{service}/runs/{run}")
        replica = run
    # As `docker logs`: --since alone shows every line since then, -n keeps the last N of them.
    count = whole_number(lines, option="-n", low=0, high=10_000_000) if lines is not None else None
    if count is None and since is None:
        count = DEFAULT_LINES
    params: dict[str, Any] = {"service": service, "n": count, "follow": tail, "replica": replica,
                              "level": level, "grep": grep, "field": field or None}
    if since is not None:
        params["since"] = time.time() - parse_duration(since, where="--since")
        if params["since"] < 0:  # the daemon would refuse it; say it in the user's words
            raise UserError(f"--since: {since[:40]!r} goes back before 1970 (e.g. --since 2h)")
    printer = render.LogPrinter(as_json=as_json, timestamps=timestamps, raw=raw)
    try:
        for record in client(project_here(project), target).stream("/v1/logs", params=params):
            printer.print(record)
            printer.flush()
    except KeyboardInterrupt:
        pass


@app.command(epilog=examples("stackblaze events", "stackblaze events worker -n 20", "stackblaze events --tail",
                             "stackblaze events worker --json | jq 'select(.kind == \"exit\")'"))
def events(
    service: Annotated[str | None, typer.Argument(help="Only this service (and what touched its project).")]
    = None,
    tail: Annotated[bool, typer.Option("--tail", "-f", "--follow", help="Follow live.")] = False,
    lines: Annotated[str, typer.Option("-n", "--lines", help="How many past events.")] = "50",
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """What happened: deploys, starts, exits, restarts.

    Deploys, builds, starts, exits (with their meaning), scheduled restarts, scaling and env changes; every
    project, grouped, when none is given or found in the current directory."""
    from stackblaze.cli import render

    name = _scope(project)
    c = client(name, target)
    params: dict[str, Any] = {"service": service, "limit": whole_number(lines, option="-n", low=1, high=100_000),
                              "all": (name is None and target is None) or None}
    try:
        if tail:
            for event in c.stream("/v1/events", params={**params, "follow": True}):
                if name is None and not as_json:
                    render.out.print(f"[{event['project']}]", style="dim", end=" ", markup=False)
                render.event_line(event, as_json=as_json)
            return
        result = c.request("GET", "/v1/events", params=params)
        if as_json or result["project"] is not None:
            for event in result["events"]:
                render.event_line(event, as_json=as_json)
            return
        # Every project: each one's events together, projects in order of their latest event.
        grouped: dict[str, list[dict[str, Any]]] = {}
        for event in reversed(result["events"]):
            grouped.setdefault(event["project"], []).insert(0, event)
        for each, found in grouped.items():
            render.out.print(f"project {each}", style="bold underline", markup=False)
            for event in found:
                render.event_line(event, as_json=False)
    except KeyboardInterrupt:
        pass
