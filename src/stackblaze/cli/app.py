"""The `stackblaze` command: parse, call the daemon once, render. Errors become one line and an exit code.

Start-up time is part of the product (`stackblaze ps` is typed all day): this module and the command
modules it loads import only typer and the standard library; each command imports httpx, rich, yaml or
the build stack inside its body, when it runs. Help is click's plain format: typer's rich help costs
70 ms of imports (rich.markdown, markdown-it) on every `--help`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from stackblaze.cli import daemon, demo, lifecycle, render_k8s, status
from stackblaze.cli.autoscale import autoscale_app
from stackblaze.cli.build import build
from stackblaze.cli.cron import cron_app
from stackblaze.cli.dashboard import EXAMPLES as DASHBOARD_EXAMPLES
from stackblaze.cli.dashboard import dashboard
from stackblaze.cli.doctor import EXAMPLES as DOCTOR_EXAMPLES
from stackblaze.cli.doctor import doctor
from stackblaze.cli.drains import drains_app
from stackblaze.cli.env import app as env_app
from stackblaze.cli.exit_codes import INTERRUPTED, OK, USAGE, exit_code_for
from stackblaze.cli.options import examples
from stackblaze.cli.queue_metrics import queue_metrics_app
from stackblaze.errors import StackblazeError

try:
    from stackblaze.cli import params

    params.install()
except (ImportError, AttributeError):  # a typer without the internals params.py knows: its own conversion
    pass

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Run background workers: deploy, scale, restart, read their logs.",
    epilog=examples("cd my-app && stackblaze deploy", "stackblaze ps", "stackblaze logs worker --tail",
                    "stackblaze scale worker --replicas 4", "stackblaze env set REDIS_URL=redis://127.0.0.1:6379/0",
                    "stackblaze ps --all --json"),
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"stackblaze {version('stackblaze')}\n")
        raise typer.Exit(OK)


@app.callback()
def root(
    _version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                           help="Print the version and exit.")] = False,
) -> None:
    """Run background workers: deploy, scale, restart, read their logs."""


app.add_typer(lifecycle.app)
app.add_typer(status.app)
tools = typer.Typer()  # a group without a name: its commands list after the ones above
app.add_typer(tools)
tools.command(epilog=examples("stackblaze build --plan", "stackblaze build services/email --plan --json",
                            "stackblaze build --image --tag 'registry.local/{project}-{service}:v1'",
                            "stackblaze build --image --dry-run"))(build)
tools.command(epilog=DASHBOARD_EXAMPLES)(dashboard)
tools.command(epilog=DOCTOR_EXAMPLES)(doctor)
app.add_typer(env_app, name="env")
app.add_typer(daemon.app, name="daemon")
app.add_typer(drains_app, name="drains")
app.add_typer(cron_app, name="cron")
app.add_typer(autoscale_app, name="autoscale")
app.add_typer(lifecycle.rollout_app, name="rollout")
app.add_typer(render_k8s.app, name="render")
app.add_typer(queue_metrics_app, name="queue-metrics")
app.add_typer(demo.app)


def fail(message: str, *, kind: str, code: int, as_json: bool) -> None:
    """Say what went wrong on stderr, one line (a JSON object with --json), and exit with its code."""
    if as_json:
        sys.stderr.write(json.dumps({"error": message, "kind": kind, "exit_code": code}) + "\n")
    else:
        sys.stderr.write(f"error: {message}\n" if code != INTERRUPTED else f"{message}\n")
    sys.exit(code)


def main() -> None:
    # httpx imports its own command-line client at import when click and rich are installed (they are:
    # typer's and ours): 70 ms of click, rich.syntax and pygments no command uses. A None entry makes that
    # optional import fail, and httpx falls back to a stub `main`.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    args = sys.argv[1:]
    # --json applies to errors too, and an error can come before typer has parsed anything.
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    try:
        code = app(args=args or ["--help"], prog_name="stackblaze", standalone_mode=False)
    except StackblazeError as error:
        fail(str(error), kind=type(error).__name__, code=exit_code_for(error), as_json=as_json)
    except (KeyboardInterrupt, typer.Abort):
        fail("aborted", kind="Aborted", code=INTERRUPTED, as_json=as_json)
    except typer.TyperException as error:  # click's usage errors, re-exported by typer
        if type(error).__name__ == "NoArgsIsHelpError":  # `stackblaze env` alone: help, as `stackblaze` alone
            sys.stdout.write(error.format_message() + "\n")
            sys.exit(OK)
        command = getattr(getattr(error, "ctx", None), "command_path", "stackblaze")
        fail(f"{error.format_message()} (see: {command} --help)", kind=type(error).__name__,
             code=getattr(error, "exit_code", USAGE), as_json=as_json)
    sys.exit(code if isinstance(code, int) else OK)
