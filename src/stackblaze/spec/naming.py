"""A project's name as `deploy` gives it, found from any directory inside the project without loading
the whole spec: the CLI asks this on every command, so the YAML stack loads only when it must."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stackblaze.errors import SpecError
from stackblaze.spec.fields import check_name, slugify
from stackblaze.spec.messages import fail

SPEC_NAMES = ("stackblaze.yaml", "stackblaze.yml")
PROCFILE = "Procfile"
# A plain top-level `project: name` line (optionally quoted, optionally commented): what almost every
# spec has. Anything else (flow style, anchors, escapes) is read by the loader `deploy` uses.
_PROJECT_LINE = re.compile(r"""^project:[ \t]*(?:'([^'\n]*)'|"([^"\\\n]*)"|([^\s#'"&*!|>{\[]+))[ \t]*(?:#.*)?$""",
                           re.MULTILINE)


@dataclass(frozen=True)
class ProjectRef:
    name: str
    found_in: Path  # the stackblaze.yaml or Procfile that names it


def procfile_project_name(source: Path) -> str:
    """A Procfile-only project is named after its directory."""
    return slugify(source.name) or "app"


def find_project(start: Path) -> ProjectRef | None:
    """The project of `start`: the nearest directory, walking up, with a stackblaze.yaml (its `project:`)
    or a Procfile (its directory's name); None when there is neither up to the root."""
    for directory in (start, *start.parents):
        spec = next((directory / name for name in SPEC_NAMES if (directory / name).is_file()), None)
        if spec is not None:
            return ProjectRef(read_project_name(spec), spec)
        if (directory / PROCFILE).is_file():
            return ProjectRef(procfile_project_name(directory), directory / PROCFILE)
    return None


def read_project_name(spec: Path) -> str:
    """The `project:` of a stackblaze.yaml; a spec the fast path cannot read fails as `deploy` would."""
    try:
        text = spec.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        text = ""
    match = _PROJECT_LINE.search(text)
    if match is not None:
        try:
            return check_name(next(group for group in match.groups() if group is not None), where="", key="project")
        except SpecError:
            pass  # the loader below says where and why, with the line
    from stackblaze.spec.document import read_document  # the YAML stack, only for the unusual spec

    document = read_document(spec, label=str(spec))
    if not isinstance(document.data, dict) or "project" not in document.data:
        raise fail(document.at(""), "no project: key (add one, e.g. project: my-app)")
    return check_name(document.data["project"], where=document.at("project"), key="project")
