"""`stackblaze build [PATH] --plan [--json]`: what detection decided for each service, without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from stackblaze.build.detect import detect_plan, plan_cache_key
from stackblaze.build.plan import BuildPlan
from stackblaze.build.toolchains import SystemToolchains
from stackblaze.cli import render
from stackblaze.errors import UserError
from stackblaze.spec import load_project

SHOWN_LOCKFILES = 6


def build(
    path: Annotated[Path, typer.Argument(help="Project directory (stackblaze.yaml or Procfile).")] = Path("."),
    plan: Annotated[bool, typer.Option("--plan", help="Print each service's build plan; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show how each service would be built: runtime, version, package manager, commands, cache key."""
    if not plan:
        raise UserError("build: say what to do: --plan prints each service's build plan (--image is coming)")
    plans = plan_project(path)
    if as_json:
        render.print_json({"project": plans[0], "plans": plans[1]})
        return
    for item in plans[1]:
        _print_plan(item)


def plan_project(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The project's name and, per service, its plan as a dict with its cache key (None: nothing to install)."""
    project = load_project(path)
    toolchains = SystemToolchains()  # one per command: each interpreter is probed once for every service
    plans: list[dict[str, Any]] = []
    for note in project.notes:
        render.err.print(f"note: {note}", markup=False)
    for service in project.services:
        found: BuildPlan = detect_plan(project.source, service, toolchains=toolchains)
        plans.append({**found.to_dict(), "workdir": found.workdir,
                      "cache_key": plan_cache_key(project.source, found)})
    return project.name, plans


def _print_plan(plan: dict[str, Any]) -> None:
    out = render.out
    version = plan["resolved_version"] or "-"
    if plan["version"]:
        version += f"  (asked {plan['version']} in {plan['version_source']})"
    manager = plan["package_manager"] or "-"
    if plan["tool_version"]:
        manager += f" {plan['tool_version']}"
    lockfiles = list(plan["lockfiles"])
    shown = ", ".join(lockfiles[:SHOWN_LOCKFILES]) + (f" and {len(lockfiles) - SHOWN_LOCKFILES} more"
                                                       if len(lockfiles) > SHOWN_LOCKFILES else "")
    if plan["install_needs_source"]:
        shown = f"the whole source ({len(lockfiles)} files)"
    start = plan["start"] + (f"  (from {plan['start_source']})" if plan["start_source"] else "")
    root = plan["root"] + (f"  (copied from {plan['copy_root']})" if plan["copy_root"] != plan["root"] else "")
    rows = [
        ("root", root), ("runtime", plan["runtime"]), ("version", version), ("package manager", manager),
        ("install", plan["install"] or "-"), ("lockfiles", shown or "-"), ("build", plan["build"] or "-"),
        ("start", start), ("env", " ".join(f"{k}={v}" for k, v in plan["env"].items()) or "-"),
        ("cache key", plan["cache_key"] or "-"),
    ]
    out.print(f"[bold]{escape(plan['service'])}[/bold]")
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.print(f"  {label:<{width}}  {escape(str(value))}")
    for note in plan["notes"]:
        out.print(f"  [dim]note: {escape(note)}[/dim]")
    for warning in plan["warnings"]:
        render.err.print(f"[yellow]warning:[/yellow] {escape(plan['service'])}: {escape(warning)}")
    out.print()
