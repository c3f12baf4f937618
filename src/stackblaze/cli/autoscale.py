"""`stackblaze autoscale why|status`: what the autoscaler decided and why, and where each autoscaled worker is."""

from __future__ import annotations

from typing import Annotated

import typer

from stackblaze.cli.options import JsonOpt, ProjectOpt, ServiceArg, TargetOpt, client_here, examples

autoscale_app = typer.Typer(no_args_is_help=True, help=(
    "Autoscaled workers: each decision with its inputs and the rule that fired, and where each one is.\n\n"
    "A worker with autoscale: in its spec follows the work in its queues (ready + due + in flight)."))


@autoscale_app.command("why", epilog=examples("stackblaze autoscale why worker",
                                              "stackblaze autoscale why worker -n 50",
                                              "stackblaze autoscale why worker --json"))
def why(service: ServiceArg,
        count: Annotated[int, typer.Option("-n", help="How many decisions, newest first (1 to 200).", min=1,
                                           max=200)] = 20,
        as_json: JsonOpt = False, project: ProjectOpt = None, target: TargetOpt = None) -> None:
    """The last decisions of a worker's autoscaler, newest first: the work it read, the count it chose and
    the rule that fired; then its recent scale changes, broker errors and drains that killed a job."""
    from stackblaze.cli import render

    result = client_here(project, target).request("GET", f"/v1/services/{service}/autoscale", params={"n": count})
    if as_json:
        render.print_json(result)
        return
    view = result.get("autoscale") or {}
    paused = f"  (paused: stackblaze scale {service} --auto resumes)" if view.get("paused") else ""
    render.out.print(f"{service}: autoscaled {view.get('min')}..{view.get('max')} on {view.get('kind')} "
                     f"{', '.join(view.get('queues') or [])}, {view.get('current')} now{paused}", markup=False)
    if not result["lines"]:
        render.out.print("no decision yet (the first comes within one poll)", markup=False)
    for line in result["lines"]:
        render.out.print(line, markup=False)
    if result["events"]:
        render.out.print()
        for event in reversed(result["events"]):
            render.out.print(f"{render.clock(event['at'])}  {event['kind']}  {event['message']}", markup=False)


@autoscale_app.command("status", epilog=examples("stackblaze autoscale status", "stackblaze autoscale status --json"))
def status(as_json: JsonOpt = False, project: ProjectOpt = None, target: TargetOpt = None) -> None:
    """Each autoscaled worker: its replicas now, the count last decided, min..max and the last rule."""
    from rich.table import Table

    from stackblaze.cli import render

    result = client_here(project, target).request("GET", "/v1/autoscale")
    if as_json:
        render.print_json(result)
        return
    if not result["services"]:
        render.out.print(f"project {result['project']}: no autoscaled services (add one: autoscale: {{min: 0, "
                         "max: 8, queues: {kind: rq, url: ${{cache.REDIS_URL}}, names: [default]}})", markup=False)
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("SERVICE", "CURRENT", "DESIRED", "MIN..MAX", "WORK", "LAST RULE"):
        table.add_column(column, no_wrap=column != "LAST RULE")
    for item in result["services"]:
        rule = "paused (scale --auto resumes)" if item["paused"] else (item["last_reason"] or "-")
        table.add_row(item["service"], str(item["current"]), "-" if item["desired"] is None else str(item["desired"]),
                      f"{item['min']}..{item['max']}", "-" if item["work"] is None else str(item["work"]), rule)
    render.out.print(table)
