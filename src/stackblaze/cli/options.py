"""What every command shares: its options, its examples, and the way to the daemon for its project.

Kept free of heavy imports (httpx, rich, yaml): every command, `--help` included, loads this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stackblaze.errors import SpecError, UserError

if TYPE_CHECKING:
    from stackblaze.cli.client import Client

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (errors too, on stderr).")]
ServiceArg = Annotated[str, typer.Argument(help="Service name, as in stackblaze.yaml.")]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="STACKBLAZE_PROJECT",
    help="Project to act on (default: the current directory's, else the only deployed one).")]

TargetOpt = Annotated[str | None, typer.Option(
    "--target", envvar="STACKBLAZE_TARGET",
    help="Where the project runs: a target of stackblaze.yaml's targets: (default: local).")]


def examples(*lines: str) -> str:
    """A command's examples for its --help epilog; the \\b keeps click from rewrapping them."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def project_here(explicit: str | None) -> str | None:
    """The project a command acts on before the daemon is asked: --project (or STACKBLAZE_PROJECT, which
    typer reads into the same option), else the current directory's; None lets the caller decide (the
    daemon picks the only deployed project, `ps` and `events` show every project)."""
    if explicit:
        return explicit
    try:
        here = Path.cwd()
    except OSError:  # the directory was deleted under the shell
        return None
    from stackblaze.spec.naming import find_project

    try:
        found = find_project(here)
    except SpecError as exc:
        raise UserError(f"{exc} (this is the current directory's project; fix it, or pass --project NAME)") from None
    return found.name if found else None


def project_root() -> Path:
    """What `deploy` and `build` act on without a path: the directory of the stackblaze.yaml (or Procfile)
    that names the current directory's project, found walking up as every command finds it; else the
    current directory, which then fails saying it has no spec."""
    from stackblaze.spec.naming import find_project

    found = find_project(Path.cwd())
    return found.found_in.parent if found else Path(".")


def client(project: str | None = None, target: str | None = None) -> Client:
    """A client for the daemon; `project` is what the daemon is told (None: its only deployed project), on
    `target` (None or "local": this machine; else the daemon is told `project@target`)."""
    from stackblaze.cli.client import Client
    from stackblaze.settings import load_settings

    if target is not None and target != "local":
        from stackblaze.spec.targets import check_target_name

        check_target_name(target, where="--target")
        return Client(load_settings(), project=f"{project or ''}@{target}")
    return Client(load_settings(), project=project)


def client_here(project: str | None, target: str | None) -> Client:
    """A client for the project this command acts on (`project_here`): the --project and --target options."""
    return client(project_here(project), target)


def whole_number(value: str, *, option: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not a whole number (e.g. {option} 4)") from None
    if not low <= number <= high:
        raise UserError(f"{option}: {number} is out of range (use {low} to {high})")
    return number
