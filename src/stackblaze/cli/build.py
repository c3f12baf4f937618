"""`stackblaze build [PATH] --plan [--json]`: what detection decided for each service, without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stackblaze.cli.options import project_root
from stackblaze.errors import UserError

if TYPE_CHECKING:
    from stackblaze.build.plan import BuildPlan

SHOWN_LOCKFILES = 6


def build(
    path: Annotated[Path | None, typer.Argument(
        help="Project directory (stackblaze.yaml or Procfile; default: the current directory's project).",
        show_default=False)] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print each service's build plan; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    image: Annotated[bool, typer.Option("--image", help="Build an OCI image per service.")] = False,
    tag: Annotated[str | None, typer.Option(
        "--tag", "-t", help="Image name; {project} and {service} are filled in (default {project}-{service}:latest)."
    )] = None,
    builder: Annotated[str | None, typer.Option(
        "--builder", help="buildah, podman or docker (default: the first that works).")] = None,
    base: Annotated[str | None, typer.Option(
        "--base", help="Base image (default: per runtime, or STACKBLAZE_BASE_IMAGE_<RUNTIME>).")] = None,
    run_base: Annotated[str | None, typer.Option(
        "--run-base", help="Base of a separate final stage (go: debian:bookworm-slim).")] = None,
    init: Annotated[str | None, typer.Option(
        "--init", help="An init the base has (e.g. tini) to run the worker under.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --image: print the Containerfiles.")] = False,
    push: Annotated[str | None, typer.Option(
        "--push", metavar="REGISTRY",
        help="With --image: build each image as REGISTRY/<tag> and push it; prints it by digest.")] = None,
    insecure_registry: Annotated[bool, typer.Option(
        "--insecure-registry", help="With --push: the registry speaks plain HTTP (e.g. one on 127.0.0.1).")] = False,
) -> None:
    """Show build plans (--plan) or build images (--image).

    --plan prints how each service would be built, running nothing; --image builds an OCI image per
    service."""
    from stackblaze.cli import render

    path = path or project_root()
    if (push is not None or insecure_registry) and (not image or dry_run):
        raise UserError("build --push/--insecure-registry: go with --image and without --dry-run "
                        "(e.g. stackblaze build --image --push 127.0.0.1:5000/acme)")
    if insecure_registry and push is None:
        raise UserError("build --insecure-registry: goes with --push REGISTRY")
    if image:
        build_images(path, tag=tag, builder=builder, base=base, run_base=run_base, init=init,
                     dry_run=dry_run, as_json=as_json, push=push, insecure=insecure_registry)
        return
    if dry_run:
        raise UserError("build --dry-run: goes with --image (e.g. stackblaze build --image --dry-run)")
    if not plan:
        raise UserError("build: say what to do: --plan prints each service's build plan, --image builds images")
    plans = plan_project(path)
    if as_json:
        render.print_json({"project": plans[0], "plans": plans[1]})
        return
    for item in plans[1]:
        _print_plan(item)


def plan_project(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The project's name and, per service, its plan as a dict with its cache key (None: nothing to install)."""
    from stackblaze.build.builder import plan_cache_key
    from stackblaze.build.detect import detect_plan
    from stackblaze.build.toolchains import SystemToolchains
    from stackblaze.cli import render
    from stackblaze.spec import load_project

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
    from rich.markup import escape

    from stackblaze.cli import render

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


def build_images(path: Path, *, tag: str | None, builder: str | None, base: str | None, run_base: str | None,
                 init: str | None, dry_run: bool, as_json: bool, push: str | None = None,
                 insecure: bool = False) -> None:
    """One image per service; the builder's output goes to stderr, the result (or Containerfile) to stdout.
    With `push` (a registry), each image is named `<push>/<tag>` and pushed, and reported by digest."""
    from stackblaze.build.detect import detect_plan
    from stackblaze.build.image import ImageToolchains, build_image, containerfile_for, image_tag
    from stackblaze.build.registry import check_registry, push_image
    from stackblaze.build.release import digest_tree
    from stackblaze.build.toolchains import SystemToolchains
    from stackblaze.cli import render
    from stackblaze.spec import load_project

    project = load_project(path)
    if tag is not None and "{service}" not in tag and len(project.services) > 1:
        raise UserError(f"--tag: {tag!r} would name {len(project.services)} images the same; put {{service}} "
                        f"in it (e.g. --tag {project.name}-{{service}}:v1)")
    registry = check_registry(push) if push is not None else None
    toolchains = ImageToolchains(SystemToolchains())  # the image runs `python3`, not this machine's path
    images: list[dict[str, Any]] = []
    for service in project.services:
        found = detect_plan(project.source, service, toolchains=toolchains)
        context = project.source / found.copy_root
        name = image_tag(tag, project=project.name, service=service.name)
        if registry is not None:
            name = f"{registry}/{name}"
        options: dict[str, Any] = {"base": base, "run_base": run_base, "stop_signal": service.stop_signal,
                                   "init": init, "project": project.name, "release": digest_tree(context)[:12]}
        if dry_run:
            images.append({"service": service.name, "tag": name,
                           "containerfile": containerfile_for(found, context, **options)})
            if not as_json:
                render.out.print(("\n" if len(images) > 1 else "") + images[-1]["containerfile"], markup=False,
                                 end="")
            continue
        render.err.print(f"==> {service.name}: building image {name}", markup=False)
        result = build_image(found, context, tag=name, builder=builder, **options,
                             output=lambda line: render.err.print(f"    {line}", markup=False, highlight=False))
        images.append({"service": service.name, "tag": result.tag, "builder": result.builder,
                       "containerfile": result.containerfile})
        if not as_json:
            render.out.print(f"{service.name}: built {result.tag} with {result.builder}", markup=False)
        if registry is not None:
            render.err.print(f"==> {service.name}: pushing {result.tag}", markup=False)
            pushed = push_image(result.tag, result.tag, insecure=insecure, builder=result.builder,
                                output=lambda line: render.err.print(f"    {line}", markup=False, highlight=False))
            images[-1].update(pushed=pushed, digest=pushed.rsplit("@", 1)[1])
            if not as_json:
                render.out.print(f"{service.name}: pushed {pushed}", markup=False)
    if as_json:
        render.print_json({"project": project.name, "images": images})
