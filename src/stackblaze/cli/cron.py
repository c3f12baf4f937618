"""`stackblaze cron list|run|suspend|resume`: cron services' schedules and runs (`logs NAME --run N` reads one)."""

from __future__ import annotations

import time
from typing import Any

import typer

from stackblaze.cli.options import JsonOpt, ProjectOpt, ServiceArg, TargetOpt, client_here, examples

cron_app = typer.Typer(no_args_is_help=True, help=(
    "Cron services: schedules, runs now, suspend and resume.\n\n"
    "A service with type: cron runs its start command on each tick of its schedule, one process per run."))


def run_words(run: dict[str, Any] | None) -> str:
    """`run 12: exit 0 after 1.2s, 3m ago` (or `run 12: killed by SIGTERM (timeout) ...`)."""
    from stackblaze.cli import render

    if not run:
        return "-"
    how = f"exit {run['exit_code']}" if run["exit_code"] is not None else \
        f"{run['exit_signal'] or 'ended'}" + (f" ({run['reason']})" if run.get("reason") else "")
    ago = f", {render.duration(time.time() - run['ended'])} ago" if run.get("ended") else ""
    return f"run {run['run']}: {how} after {run['duration'] or 0:.1f}s{ago}"


def next_words(at: float | None) -> str:
    from stackblaze.cli import render

    if at is None:
        return "-"
    return f"{render.clock(at)} (in {render.duration(max(0.0, at - time.time()))})"


@cron_app.command("list", epilog=examples("stackblaze cron list", "stackblaze cron list --json"))
def cron_list(as_json: JsonOpt = False, project: ProjectOpt = None, target: TargetOpt = None) -> None:
    """Each cron service: schedule, next run, last run.

    Schedule and time zone, state (scheduled, running, suspended), the next run and the last one with its
    exit code and duration."""
    from rich.table import Table

    from stackblaze.cli import render

    result = client_here(project, target).request("GET", "/v1/cron")
    if as_json:
        render.print_json(result)
        return
    if not result["services"]:
        render.out.print(f"project {result['project']}: no cron services (add one: type: cron, schedule: "
                         "'0 3 * * *')", markup=False)
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("SERVICE", "SCHEDULE", "STATE", "NEXT RUN", "LAST RUN"):
        table.add_column(column, no_wrap=column != "LAST RUN")
    for item in result["services"]:
        table.add_row(item["service"], f"{item['schedule']}  {item['timezone']}", item["state"],
                      next_words(item["next_run"]), run_words(item["last_run"]))
    render.out.print(table)


@cron_app.command("run", epilog=examples("stackblaze cron run nightly", "stackblaze logs nightly --run 12"))
def cron_run(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
             target: TargetOpt = None) -> None:
    """Run a cron service now, outside its schedule.

    Prints the run's number; read its output with stackblaze logs NAME --run N."""
    from stackblaze.cli import render

    result = client_here(project, target).request("POST", f"/v1/cron/{service}/run")
    if as_json:
        render.print_json(result)
        return
    render.out.print(f"{service}: run {result['run']} started (logs: stackblaze logs {service} --run "
                     f"{result['run']})", markup=False)


def _suspend(service: str, verb: str, as_json: bool, project: str | None, target: str | None) -> None:
    from stackblaze.cli import render

    result = client_here(project, target).request("POST", f"/v1/cron/{service}/{verb}")
    if as_json:
        render.print_json(result)
        return
    render.out.print(f"{service}: suspended (no tick runs; a run going on finishes)" if result["suspended"]
                     else f"{service}: resumed (the next tick runs; none missed meanwhile runs late)", markup=False)


@cron_app.command("suspend", epilog=examples("stackblaze cron suspend nightly"))
def cron_suspend(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
                 target: TargetOpt = None) -> None:
    """Stop running a cron service's ticks (kept across deploys and restarts)."""
    _suspend(service, "suspend", as_json, project, target)


@cron_app.command("resume", epilog=examples("stackblaze cron resume nightly"))
def cron_resume(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
                target: TargetOpt = None) -> None:
    """Run a suspended cron service's ticks again."""
    _suspend(service, "resume", as_json, project, target)


@cron_app.command("runs", epilog=examples("stackblaze cron runs nightly", "stackblaze cron runs nightly --json"))
def cron_runs(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
              target: TargetOpt = None) -> None:
    """A cron service's kept runs, newest first: trigger, attempt, exit, duration."""
    from rich.table import Table

    from stackblaze.cli import render

    result = client_here(project, target).request("GET", f"/v1/cron/{service}/runs")
    if as_json:
        render.print_json(result)
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("RUN", "TRIGGER", "ATTEMPT", "STARTED", "STATE", "EXIT"):
        table.add_column(column, no_wrap=True)
    for run in result["runs"]:
        table.add_row(str(run["run"]), run["trigger"], str(run["attempt"]), render.clock(run["started"]),
                      run["state"], "-" if run["state"] == "running" else run_words(run))
    render.out.print(table)
