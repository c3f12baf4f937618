"""The `stackblaze` command: parse, call the daemon once, render. Errors become one line and an exit code."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from stackblaze.cli import render
from stackblaze.cli.build import build
from stackblaze.cli.client import Client
from stackblaze.cli.drains import drains_app
from stackblaze.cli.exit_codes import USAGE, exit_code_for
from stackblaze.errors import StackblazeError, UserError
from stackblaze.settings import load_settings
from stackblaze.spec import parse_duration

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Run background workers: deploy, scale, restart, read their logs.")
env_app = typer.Typer(no_args_is_help=True, help="Project environment variables (secrets never printed).")
daemon_app = typer.Typer(no_args_is_help=True, help="The stackblaze daemon (started by any command).")
app.add_typer(env_app, name="env")
app.add_typer(daemon_app, name="daemon")
app.add_typer(drains_app, name="drains")
rollout_app = typer.Typer(no_args_is_help=True, help="Rollouts: wait for one and see how it ended.")
app.add_typer(rollout_app, name="rollout")
app.command()(build)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ServiceArg = Annotated[str, typer.Argument(help="Service name, as in stackblaze.yaml.")]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="STACKBLAZE_PROJECT", help="Project to act on (needed when several are deployed).")]


def client(project: str | None = None) -> Client:
    return Client(load_settings(), project=project)


@app.command()
def deploy(
    path: Annotated[Path, typer.Argument(help="Project directory (stackblaze.yaml or Procfile).")] = Path("."),
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once built; follow with `rollout "
                                         "status`.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build every service (dependencies cached by lockfile), roll out the new releases and wait until every
    service runs its new release at its count. Exit 1 when a build or a rollout failed."""
    c = client()
    if not as_json:
        render.err.print(f"deploying {path.resolve()}")
    result = c.deploy(str(path.resolve()), on_progress=(lambda _: None) if as_json else render.build_line,
                      detach=detach)
    if as_json:
        render.print_json(result)
    else:
        for note in result["notes"]:
            render.err.print(f"note: {note}")
        for item in result["services"]:
            fresh = "new release" if item["new_release"] else "unchanged"
            render.out.print(f"{item['service']}: release {item['release']} ({fresh}), {item['replicas']} replica(s)")
        for name in result["removed"]:
            render.out.print(f"{name}: removed from the spec, stopping")
        for item in result["services"] if not detach else []:
            render.rollout_outcome(item)
    _fail_on_rollouts([item.get("rollout") or {} for item in result["services"]])
    if not as_json:
        c.project = result["project"]
        render.ps_table(c.request("GET", "/v1/ps"))


def _fail_on_rollouts(rollouts: list[dict[str, Any]]) -> None:
    failed = [r for r in rollouts if r.get("state") == "failed"]
    if failed:
        raise StackblazeError("; ".join(f"{r['service']}: rollout of release {r['release']} failed: {r['reason']}"
                                        for r in failed))


@rollout_app.command("status")
def rollout_status(
    service: Annotated[str | None, typer.Argument(help="Service (default: every service).")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Wait for the rollouts in progress and report them as `deploy` does (exit 1 when one failed)."""
    result = client(project).rollout_status(service, on_progress=(lambda _: None) if as_json else render.build_line)
    if as_json:
        render.print_json(result)
    else:
        for item in result["services"]:
            render.rollout_outcome(item)
    _fail_on_rollouts(result["services"])


@app.command()
def releases(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None) -> None:
    """A service's kept releases: number, when, runtime, whether dependencies were installed."""
    result = client(project).request("GET", f"/v1/services/{service}/releases")
    render.print_json(result) if as_json else render.releases_table(result)


@app.command()
def rollback(
    service: ServiceArg,
    release: Annotated[int | None, typer.Argument(help="Release number (default: the previous one).")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Run an earlier kept release again, without rebuilding."""
    result = client(project).request("POST", f"/v1/services/{service}/rollback", body={"release": release})
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"{service}: release {result['from']} -> {result['release']}")


@app.command()
def ps(service: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Services and their replicas: state, pid, uptime, restarts, last exit."""
    result = client(project).request("GET", "/v1/ps", params={"service": service})
    render.print_json(result) if as_json else render.ps_table(result)


@app.command()
def scale(
    service: ServiceArg,
    replicas: Annotated[str, typer.Option("--replicas", "-r", help="How many to run (0 to 1000).")],
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Run N replicas of a service; scaling down stops the highest-numbered first."""
    count = whole_number(replicas, option="--replicas", low=0, high=1000)
    result = client(project).request("POST", f"/v1/services/{service}/scale", body={"replicas": count})
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"{service}: {result['from']} -> {result['replicas']} replicas")


def _lifecycle(service: str, action: str, as_json: bool, done: str, project: str | None) -> None:
    result = client(project).request("POST", f"/v1/services/{service}/{action}")
    render.print_json(result) if as_json else render.out.print(f"{service}: {done}")


@app.command()
def restart(service: ServiceArg, as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Replace every replica of a service (by its strategy: rolling or recreate)."""
    _lifecycle(service, "restart", as_json, "restarting", project)


@app.command()
def stop(service: ServiceArg, as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Stop a service's replicas (stop signal, then SIGKILL after its grace); waits until they are gone."""
    _lifecycle(service, "stop", as_json, "stopped", project)


@app.command()
def start(service: ServiceArg, as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Start a stopped service again."""
    _lifecycle(service, "start", as_json, "started", project)


@app.command()
def destroy(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False, as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Stop every service of the project and delete its releases, logs, env and events."""
    c = client(project)
    if not yes and sys.stdin.isatty():
        typer.confirm("Destroy the project: stop its workers, delete releases, logs and env?", abort=True)
    result = c.request("POST", "/v1/destroy")
    render.print_json(result) if as_json else render.out.print(f"project {result['project']} destroyed")


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="Service (default: all).")] = None,
    tail: Annotated[bool, typer.Option("--tail", "-f", "--follow", help="Follow live.")] = False,
    lines: Annotated[str, typer.Option("-n", "--lines", help="Show the last N lines.")] = "100",
    since: Annotated[str | None, typer.Option("--since", help="Only lines newer than this, e.g. 10m, 2h.")] = None,
    replica: Annotated[int | None, typer.Option("--replica", min=1, help="Only this replica.")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show each line's time.")] = False,
    level: Annotated[str | None, typer.Option("--level", help="JSON lines at this level and above.")] = None,
    grep: Annotated[str | None, typer.Option("--grep", help="Only lines containing TEXT.")] = None,
    field: Annotated[list[str] | None, typer.Option("--field", help="JSON lines with key=value.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print JSON lines as they were written.")] = False,
    build: Annotated[bool, typer.Option("--build", help="The service's last build log instead.")] = False,
    release: Annotated[int | None, typer.Option("--release", help="With --build: that release's log.")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Logs of every replica, prefixed `worker.1 |`; --tail follows live; JSON lines shown readably."""
    if build:
        if service is None:
            raise UserError("logs --build: name the service (e.g. stackblaze logs worker --build)")
        payload = client(project).request("GET", f"/v1/services/{service}/build-log", params={"release": release})
        render.print_json(payload) if as_json else sys.stdout.write(payload["log"])
        return
    count = whole_number(lines, option="-n", low=0, high=10_000_000)
    params: dict[str, Any] = {"service": service, "n": count, "follow": tail, "replica": replica,
                              "level": level, "grep": grep, "field": field or None}
    if since is not None:
        params["since"] = time.time() - parse_duration(since, where="--since")
    printer = render.LogPrinter(as_json=as_json, timestamps=timestamps, raw=raw)
    try:
        for record in client(project).stream("/v1/logs", params=params):
            printer.print(record)
            printer.flush()
    except KeyboardInterrupt:
        pass


@app.command()
def events(
    service: Annotated[str | None, typer.Argument()] = None,
    tail: Annotated[bool, typer.Option("--tail", "-f", "--follow", help="Follow live.")] = False,
    lines: Annotated[str, typer.Option("-n", "--lines", help="How many past events.")] = "50",
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """What happened: deploys, starts, exits (with their meaning), scheduled restarts, scaling."""
    c = client(project)
    params: dict[str, Any] = {"service": service, "limit": whole_number(lines, option="-n", low=1, high=100_000)}
    try:
        if tail:
            for event in c.stream("/v1/events", params={**params, "follow": True}):
                render.event_line(event, as_json=as_json)
            return
        for event in c.request("GET", "/v1/events", params=params)["events"]:
            render.event_line(event, as_json=as_json)
    except KeyboardInterrupt:
        pass


@env_app.command("list")
def env_list(as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Every variable; secret values are shown masked."""
    result = client(project).request("GET", "/v1/env")
    if as_json:
        render.print_json(result)
        return
    for var in result["env"]:
        scope = f"  [{var['service']}]" if var["service"] else ""
        render.out.print(f"{var['key']}={var['value']}{scope}{'  (secret)' if var['secret'] else ''}")


def _pairs(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:  # KEY alone: the value comes from a prompt or stdin, never from argv (ps, history)
            value = typer.prompt(key, hide_input=True) if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise UserError(f"env set: {key!r} is not a variable name (e.g. WORKER_CONCURRENCY=5)")
        values[key] = value
    return values


@env_app.command("set")
def env_set(
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE ... (KEY alone reads the value from stdin).")],
    secret: Annotated[bool, typer.Option("--secret", help="Encrypt at rest; never print it back.")] = False,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only for this service.")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Set variables and restart the affected replicas (rolling)."""
    body = {"set": _pairs(pairs), "secret": secret, "service": service}
    result = client(project).request("POST", "/v1/env", body=body)
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"set {', '.join(result['set'])}; restarting {', '.join(result['restarted']) or 'nothing'}")


@env_app.command("unset")
def env_unset(
    keys: Annotated[list[str], typer.Argument(help="KEY ...")],
    service: Annotated[str | None, typer.Option("--service", "-s")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Remove variables and restart the affected replicas (rolling)."""
    result = client(project).request("POST", "/v1/env", body={"unset": keys, "service": service})
    if as_json:
        render.print_json(result)
    else:
        restarted = ", ".join(result["restarted"]) or "nothing"
        render.out.print(f"unset {', '.join(result['unset'])}; restarting {restarted}")


@daemon_app.command("start")
def daemon_start(as_json: JsonOpt = False) -> None:
    """Start the daemon (and its runner) if it is not running."""
    status = client().ensure_daemon()
    render.print_json(status) if as_json else render.out.print(f"daemon running (pid {status['pid']})")


@daemon_app.command("stop")
def daemon_stop(
    all_too: Annotated[bool, typer.Option("--all", help="Stop every worker and the runner too.")] = False,
) -> None:
    """Stop the daemon. Workers keep running under the runner unless --all."""
    stopped = client().shutdown(all_too=all_too)
    if not stopped:
        render.out.print("daemon not running")
    else:
        render.out.print("daemon and workers stopped" if all_too else "daemon stopped (workers keep running)")


@daemon_app.command("status")
def daemon_status(as_json: JsonOpt = False) -> None:
    """Whether the daemon runs, where its state lives."""
    c = client()
    status = c.daemon_status()
    if as_json:
        render.print_json(status or {"running": False, "home": str(c.settings.home)})
    elif status is None:
        render.out.print(f"daemon not running (home {c.settings.home})")
        raise typer.Exit(1)
    else:
        render.out.print(f"daemon running (pid {status['pid']}, home {status['home']}, "
                         f"projects: {', '.join(status['projects']) or 'none'})")


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long to show live logs.")] = 4.0,
) -> None:
    """Deploy a bundled example (2 replicas, no broker), show ps, logs, a crash and its restart."""
    from stackblaze.cli.demo import run_demo

    run_demo(client(), seconds=seconds)


def whole_number(value: str, *, option: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not a whole number (e.g. {option} 4)") from None
    if not low <= number <= high:
        raise UserError(f"{option}: {number} is out of range (use {low} to {high})")
    return number


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except StackblazeError as error:
        render.err.print(f"error: {error}", markup=False)
        sys.exit(exit_code_for(error))
    except (KeyboardInterrupt, typer.Abort):
        render.err.print("aborted")
        sys.exit(130)
    except typer.TyperException as error:  # click's usage errors, re-exported by typer
        command = getattr(getattr(error, "ctx", None), "command_path", "stackblaze")
        render.err.print(f"error: {error.format_message()} (see: {command} --help)", markup=False)
        sys.exit(getattr(error, "exit_code", USAGE))
    sys.exit(code if isinstance(code, int) else 0)
