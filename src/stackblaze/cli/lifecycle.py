"""Commands that change what runs: deploy, rollouts, releases, scale, restart, stop, start, destroy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import MissingParameter, UsageError

from stackblaze.cli.options import (
    JsonOpt,
    ProjectOpt,
    ServiceArg,
    TargetOpt,
    client,
    examples,
    project_here,
    project_root,
    whole_number,
)
from stackblaze.errors import StackblazeError, UserError

app = typer.Typer()
rollout_app = typer.Typer(no_args_is_help=True, help="Rollouts: wait for one and see how it ended.")


@app.command(epilog=examples("cd my-app && stackblaze deploy", "stackblaze deploy ~/src/my-app",
                             "stackblaze deploy --target prod   # targets: {prod: {kind: kubernetes, ...}}",
                             "stackblaze deploy --detach && stackblaze rollout status",
                             "stackblaze deploy --json | jq .services"))
def deploy(
    path: Annotated[Path | None, typer.Argument(
        help="Project directory (stackblaze.yaml or Procfile; default: the current directory's project).",
        show_default=False)] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once built; follow with `rollout "
                                         "status`.")] = False,
    as_json: JsonOpt = False,
    target: TargetOpt = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubernetes: the kubeconfig context "
                                                "(over the target's).")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="Kubernetes: the namespace (default: one "
                                                  "named after the project).")] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="Kubernetes: where images are pushed "
                                                 "(host[:port][/path]).")] = None,
) -> None:
    """Build and roll out the project; wait for the rollouts.

    Builds every service (dependencies cached by lockfile), rolls out the new releases and waits until every
    service runs its new release at its count. Exit 1 when a build or a rollout failed."""
    from stackblaze.cli import render

    source = (path or project_root()).resolve()
    c = client()
    if not as_json:
        render.err.print(f"deploying {source}", markup=False)
    result = c.deploy(str(source), on_progress=(lambda _: None) if as_json else render.build_line, detach=detach,
                      target={"target": target, "context": context, "namespace": namespace, "registry": registry})
    if as_json:
        render.print_json(result)
    else:
        for note in result["notes"]:
            render.err.print(f"note: {note}", markup=False)
        for item in result["services"]:
            fresh = "new release" if item["new_release"] else "unchanged"
            runs = "runs on its schedule" if item.get("type") == "cron" else f"{item['replicas']} replica(s)"
            render.out.print(f"{item['service']}: release {item['release']} ({fresh}), {runs}", markup=False)
        for name in result["removed"]:
            render.out.print(f"{name}: removed from the spec, stopping", markup=False)
        for item in result["services"] if not detach else []:
            render.rollout_outcome(item)
    _fail_on_rollouts([item.get("rollout") or {} for item in result["services"]])
    if not as_json:
        c.project = result["project"]  # `acme@prod` on a target
        render.ps_table(c.request("GET", "/v1/ps"))


def _fail_on_rollouts(rollouts: list[dict[str, Any]]) -> None:
    failed = [r for r in rollouts if r.get("state") == "failed"]
    if failed:
        raise StackblazeError("; ".join(f"{r['service']}: rollout of release {r['release']} failed: {r['reason']}"
                                        for r in failed))


@rollout_app.command("status", epilog=examples("stackblaze rollout status", "stackblaze rollout status worker --json"))
def rollout_status(
    service: Annotated[str | None, typer.Argument(help="Service (default: every service).")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Wait for the rollouts in progress.

    Reports them as `deploy` does (exit 1 when one failed)."""
    from stackblaze.cli import render

    result = client(project_here(project), target).rollout_status(
        service, on_progress=(lambda _: None) if as_json else render.build_line)
    if as_json:
        render.print_json(result)
    else:
        for item in result["services"]:
            render.rollout_outcome(item)
    _fail_on_rollouts(result["services"])


@app.command(epilog=examples("stackblaze releases worker", "stackblaze releases worker --json | jq '.releases[].path'"))
def releases(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
            target: TargetOpt = None) -> None:
    """A service's kept releases, with their paths.

    Number, when, runtime, dependencies, build time, the release's tree and its start command."""
    from stackblaze.cli import render
    result = client(project_here(project), target).request("GET", f"/v1/services/{service}/releases")
    render.print_json(result) if as_json else render.releases_table(result)


@app.command(epilog=examples("stackblaze rollback worker", "stackblaze rollback worker 3"))
def rollback(
    service: ServiceArg,
    release: Annotated[int | None, typer.Argument(help="Release number (default: the previous one).")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Run an earlier kept release again, without rebuilding."""
    from stackblaze.cli import render
    result = client(project_here(project), target).request("POST", f"/v1/services/{service}/rollback",
                                                   body={"release": release})
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"{service}: release {result['from']} -> {result['release']}", markup=False)


@app.command(epilog=examples("stackblaze scale worker --replicas 4", "stackblaze scale worker -r 0",
                             "stackblaze scale worker --auto"))
def scale(
    service: ServiceArg,
    replicas: Annotated[str | None, typer.Option("--replicas", "-r", help="How many to run (0 to 1000).")] = None,
    auto: Annotated[bool, typer.Option("--auto", help="Hand an autoscaled worker back to its autoscaler.")] = False,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Run N replicas of a service.

    Scaling down stops the highest-numbered first; the count is kept across deploys. On an autoscaled
    worker a manual scale pauses autoscaling until `scale NAME --auto`."""
    from stackblaze.cli import render
    if replicas is None and not auto:  # as if --replicas were required: the usage error users know
        raise MissingParameter(param_hint="'--replicas' (or --auto)", param_type="option")
    if auto and replicas is not None:
        raise UsageError("--replicas and --auto: pass one (--auto hands the count back to the autoscaler)")
    if auto:
        result = client(project_here(project), target).request("POST", f"/v1/services/{service}/autoscale-resume")
        if as_json:
            render.print_json(result)
        else:
            render.out.print(f"{service}: autoscaling resumed at {result['replicas']} replicas" if result["resumed"]
                             else f"{service}: autoscaling was not paused ({result['replicas']} replicas)",
                             markup=False)
        return
    assert replicas is not None
    count = whole_number(replicas, option="--replicas", low=0, high=1000)
    result = client(project_here(project), target).request("POST", f"/v1/services/{service}/scale",
                                                           body={"replicas": count})
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"{service}: {result['from']} -> {result['replicas']} replicas", markup=False)
        if result.get("note"):
            render.out.print(f"{service}: {result['note']}", markup=False)


def _lifecycle(service: str, action: str, as_json: bool, done: str, project: str | None,
               target: str | None) -> None:
    from stackblaze.cli import render
    result = client(project_here(project), target).request("POST", f"/v1/services/{service}/{action}")
    render.print_json(result) if as_json else render.out.print(f"{service}: {done}", markup=False)


@app.command(epilog=examples("stackblaze restart worker", "stackblaze restart worker --project shop"))
def restart(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
            target: TargetOpt = None) -> None:
    """Replace every replica of a service.

    By its strategy: rolling or recreate."""
    _lifecycle(service, "restart", as_json, "restarting", project, target)


@app.command(epilog=examples("stackblaze stop worker", "stackblaze start worker"))
def stop(service: ServiceArg, as_json: JsonOpt = False, project: ProjectOpt = None,
            target: TargetOpt = None) -> None:
    """Stop a service's replicas.

    The stop signal, then SIGKILL after its grace; waits until they are gone."""
    _lifecycle(service, "stop", as_json, "stopped", project, target)


@app.command(epilog=examples("stackblaze start worker", "stackblaze start", "stackblaze start --project shop"))
def start(
    service: Annotated[str | None, typer.Argument(
        help="Service (default: every stopped service of the project).", show_default=False)] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Start a stopped service (or every stopped one).

    After `stop`, or after `daemon stop --all`, which leaves every service stopped."""
    if service is not None:
        _lifecycle(service, "start", as_json, "started", project, target)
        return
    from stackblaze.cli import render
    c = client(project_here(project), target)
    status = c.request("GET", "/v1/ps")
    c.project = status["project"]
    stopped = [item["service"] for item in status["services"] if not item["running_flag"]]
    for name in stopped:
        c.request("POST", f"/v1/services/{name}/start")
    if as_json:
        render.print_json({"project": status["project"], "started": stopped})
    else:
        render.out.print(f"started {', '.join(stopped)}" if stopped else
                         f"project {status['project']}: nothing to start (no service is stopped)", markup=False)


@app.command(epilog=examples("stackblaze destroy", "stackblaze destroy --project demo --yes",
                             "stackblaze destroy --disks --yes"))
def destroy(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (needed when stdin is not a terminal).")]
    = False,
    disks: Annotated[bool, typer.Option("--disks", help="Also delete its services' disks and the data of its "
                                                        "Redis and PostgreSQL services (kept by default).")] = False,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Stop a project and delete all it has.

    Stops every service of the project and deletes its releases, logs, env and events. Its disks and its
    backing services' data (Redis, PostgreSQL) stay under the home's disks/ unless --disks. Asks first on a
    terminal; elsewhere --yes is needed."""
    from stackblaze.cli import render

    name = project_here(project)
    if not yes and not sys.stdin.isatty():  # a script must say so: nobody is there to answer
        raise UserError("destroy: stdin is not a terminal, so nobody can confirm: pass --yes "
                        f"(e.g. stackblaze destroy --project {name or 'NAME'} --yes)")
    c = client(name, target)
    if not yes:
        target = c.request("GET", "/v1/ps")["project"]  # which project, checked before asking about it
        data = ", and its disks and Redis/PostgreSQL data" if disks else ""
        if not typer.confirm(f"Destroy project {target}: stop its workers, delete its releases, logs, env "
                             f"and events{data}?", default=False):
            raise StackblazeError(f"destroy: not confirmed; project {target} is left as it was")
        c.project = target
    result = c.request("POST", "/v1/destroy", params={"disks": "true"} if disks else None)
    render.print_json(result) if as_json else render.out.print(f"project {result['project']} destroyed",
                                                                markup=False)
