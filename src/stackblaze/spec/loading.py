"""Find a project's spec (stackblaze.yaml, stackblaze.yml or a Procfile) and load it into a Project."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from stackblaze.spec.document import read_document
from stackblaze.spec.fields import slugify
from stackblaze.spec.messages import fail, show
from stackblaze.spec.model import Project, Service
from stackblaze.spec.naming import PROCFILE, SPEC_NAMES, procfile_project_name
from stackblaze.spec.procfile import ProcessType, read_procfile
from stackblaze.spec.schema import read_project


def load_project(path: Path) -> Project:
    """Load the project at path: a directory, a stackblaze.yaml file or a Procfile."""
    path = Path(path)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError):
        is_dir = is_file = False
    if is_dir:
        spec = next((path / name for name in SPEC_NAMES if (path / name).is_file()), None)
        if spec is None and not (path / PROCFILE).is_file():
            raise fail(str(path), "no stackblaze.yaml or Procfile found (create one; see README)")
    elif is_file:
        spec = None if path.name == PROCFILE else path
    else:
        raise fail(str(path), "no such file or directory (check the path)")
    source = (path if is_dir else path.parent).resolve()
    if spec is None:
        return _load_procfile_project(source)
    document = read_document(spec, label=spec.name)
    return read_project(document, source=source, spec_file=source / spec.name, find_commands=_ProcfileCommands(source))


def _load_procfile_project(source: Path) -> Project:
    """A directory with only a Procfile: every process type but web and release runs as a worker."""
    notes: list[str] = []
    services: dict[str, Service] = {}
    release: ProcessType | None = None
    for process in read_procfile(source / PROCFILE, label=PROCFILE):
        where = f"{PROCFILE}:{process.line}"
        if process.name == "web":
            notes.append(f"{where}: process type 'web' skipped: {_web_advice(process, source)}")
            continue
        if process.name == "release":
            release = process
            continue
        name = slugify(process.name)
        if name is None:
            raise fail(where, f"{show(process.name)} cannot be a service name (start it with a letter, e.g. worker)")
        if name in services:
            raise fail(
                where,
                f"{show(process.name)} and another process type both become service {name!r} (rename one)",
            )
        if name != process.name:
            notes.append(f"{where}: process type {process.name!r} runs as service {name!r}")
        services[name] = Service(name=name, start=process.command, start_source="Procfile")
    if not services:
        raise fail(f"{PROCFILE}:1", "has no process type to run as a worker (add one, e.g. worker: python worker.py)")
    if release is not None:
        # Heroku runs it once per app release; every service here shares one root and one build, so it
        # runs once, before the first service rolls out (and so before any service does).
        first = next(iter(services.values()))
        services[first.name] = dataclasses.replace(first, release=release.command)
    return Project(
        name=procfile_project_name(source),
        services=tuple(services.values()),
        source=source,
        spec_file=None,
        notes=tuple(notes),
    )


def _web_advice(process: ProcessType, source: Path) -> str:
    """Renaming `web` to a worker would run it with no port and restart it forever: say what works."""
    port = "PORT=5000 " if "PORT" in process.command else ""  # Heroku-style commands read $PORT
    return (f"web processes are not run yet (stackblaze runs workers and assigns no port); "
            f"run it yourself: cd {source} && {port}{process.command}")


class _ProcfileCommands:
    """Reads the Procfile at a service root only when a service without `start` needs it, once per root."""

    def __init__(self, source: Path) -> None:
        self._source = source
        self._by_root: dict[str, Mapping[str, str]] = {}

    def __call__(self, root: str) -> Mapping[str, str]:
        if root not in self._by_root:
            procfile = self._source / root / PROCFILE
            label = PROCFILE if root == "." else f"{root}/{PROCFILE}"
            found = read_procfile(procfile, label=label) if procfile.is_file() else ()
            self._by_root[root] = {process.name: process.command for process in found}
        return self._by_root[root]
