"""`stackblaze drains add|list|remove|test`: ship every log line to a syslog or HTTPS receiver.

The table is drawn here rather than in render.py: it is only this command's, and render's console is reused.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stackblaze.cli.options import JsonOpt, ProjectOpt, TargetOpt, client_here, examples

drains_app = typer.Typer(no_args_is_help=True, help=(
    "Log drains: ship every log line to syslog or HTTPS.\n\n"
    "Receivers: syslog+tls://host:port, syslog://host:port or https://user:token@host/path."))

IdArg = Annotated[int, typer.Argument(help="Drain ID, as `stackblaze drains list` shows it.")]
STATE_STYLES = {"ok": "green", "failing": "red", "stopped": "dim"}


@drains_app.command("add", epilog=examples("stackblaze drains add syslog+tls://logs.example.com:6514",
                                           "stackblaze drains add 'https://user:token@logs.example.com/in' -s worker",
                                           "stackblaze drains add 'syslog+tls://10.0.0.5:6514?ca=/etc/ssl/my-ca.pem'"))
def drains_add(
    url: Annotated[str, typer.Argument(help="syslog+tls://host:port, syslog://host:port or https://...; "
                                            "?ca=/path/ca.pem trusts a private CA.")],
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service's lines.")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Ship new log lines to a syslog or HTTPS receiver.

    Lines of the project, or of one service, from now on; credentials stay masked."""
    from stackblaze.cli import render

    result = client_here(project, target).request("POST", "/v1/drains", body={"url": url, "service": service})
    if as_json:
        render.print_json(result)
        return
    scope = f"service {result['service']}" if result["service"] else f"project {result['project']}"
    render.out.print(f"drain {result['id']} added: {result['url']} ({scope}, lines from now on)", markup=False)


@drains_app.command("list", epilog=examples("stackblaze drains list", "stackblaze drains list --json"))
def drains_list(as_json: JsonOpt = False, project: ProjectOpt = None,
                target: TargetOpt = None) -> None:
    """Each drain: state, sent, behind, dropped.

    Lines sent, retried, behind (not delivered yet) and dropped (rotated away first)."""
    from rich.table import Table
    from rich.text import Text

    from stackblaze.cli import render

    result = client_here(project, target).request("GET", "/v1/drains")
    if as_json:
        render.print_json(result)
        return
    if not result["drains"]:
        render.out.print(f"project {result['project']}: no drains (add one: stackblaze drains add URL)")
        return
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="dim")
    for column in ("ID", "URL", "SERVICE", "STATE", "SENT", "RETRIED", "BEHIND", "DROPPED", "LAST ERROR"):
        table.add_column(column, no_wrap=column != "LAST ERROR", justify="right" if column in (
            "SENT", "RETRIED", "BEHIND", "DROPPED") else "left")
    for drain in result["drains"]:
        table.add_row(
            str(drain["id"]), Text(drain["url"]), drain["service"] or "(all)",
            Text(drain["state"], style=STATE_STYLES.get(drain["state"], "")), count(drain["sent"]),
            count(drain["retried"]), count(drain["behind"]), count(drain["dropped"]),
            Text(drain["last_error"] or "-"),
        )
    render.out.print(table)


@drains_app.command("remove", epilog=examples("stackblaze drains remove 2"))
def drains_remove(drain_id: IdArg, as_json: JsonOpt = False, project: ProjectOpt = None,
                target: TargetOpt = None) -> None:
    """Stop a drain.

    Its cursor is forgotten: the log files it held are let go."""
    from stackblaze.cli import render

    result = client_here(project, target).request("DELETE", f"/v1/drains/{drain_id}")
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"drain {result['id']} removed: {result['url']} (sent {result['sent']} lines)", markup=False)


@drains_app.command("test", epilog=examples("stackblaze drains test 2"))
def drains_test(drain_id: IdArg, as_json: JsonOpt = False, project: ProjectOpt = None,
                target: TargetOpt = None) -> None:
    """Send a test message through a drain.

    Waits for the receiver to acknowledge it; exit 1 when it does not."""
    from stackblaze.cli import render

    result = client_here(project, target).request("POST", f"/v1/drains/{drain_id}/test")
    if as_json:
        render.print_json(result)
    elif result["ok"]:
        render.out.print(f"drain {result['id']}: test message delivered to {result['url']}", markup=False)
    else:
        render.err.print(f"drain {result['id']}: test failed: {result['error']}", markup=False)
    if not result["ok"]:
        raise typer.Exit(1)


def count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"
