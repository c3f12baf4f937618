"""`stackblaze daemon start|stop|status`: the control plane's own life (any other command starts it)."""

from __future__ import annotations

from typing import Annotated

import typer

from stackblaze.cli.options import JsonOpt, client, examples

app = typer.Typer(no_args_is_help=True, help="The stackblaze daemon (started by any command).")


@app.command("start", epilog=examples("stackblaze daemon start",
                                      "STACKBLAZE_HOME=/srv/stackblaze stackblaze daemon start"))
def daemon_start(as_json: JsonOpt = False) -> None:
    """Start the daemon (and its runner) if it is not running."""
    from stackblaze.cli import render

    status = client().ensure_daemon()
    render.print_json(status) if as_json else render.out.print(f"daemon running (pid {status['pid']})")


@app.command("stop", epilog=examples("stackblaze daemon stop", "stackblaze daemon stop --all"))
def daemon_stop(
    all_too: Annotated[bool, typer.Option("--all", help="Stop every worker and the runner too; they stay "
                                          "stopped, after a restart too, until `stackblaze start`.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop the daemon. Workers keep running under the runner unless --all."""
    from stackblaze.cli import render

    stopped = client().shutdown(all_too=all_too)
    if as_json:
        render.print_json({"was_running": stopped, "workers": "stopped" if all_too else "left running"})
    elif not stopped:
        render.out.print("daemon not running")
    else:
        render.out.print("daemon and workers stopped" if all_too else "daemon stopped (workers keep running)")


@app.command("status", epilog=examples("stackblaze daemon status", "stackblaze daemon status --json"))
def daemon_status(as_json: JsonOpt = False) -> None:
    """Whether the daemon runs, and where its state lives.

    Exit 1 when it does not run (with --json, the answer says so and the exit is 0)."""
    from stackblaze.cli import render

    c = client()
    status = c.daemon_status()
    if as_json:
        render.print_json(status or {"running": False, "home": str(c.settings.home)})
    elif status is None:
        render.out.print(f"daemon not running (home {c.settings.home})", markup=False)
        raise typer.Exit(1)
    else:
        render.out.print(f"daemon running (pid {status['pid']}, home {status['home']}, "
                         f"projects: {', '.join(status['projects']) or 'none'})", markup=False)
