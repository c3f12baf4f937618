"""Python: pip, uv, poetry, pipenv or `pip install .`, into a venv at `$DEPS/venv` made by the resolved interpreter."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from stackblaze.build.detection.tree import (
    MAX_FILE_BYTES,
    Parts,
    Request,
    Tree,
    at_least,
    first_line,
    line_of,
    manifests,
    present,
    require_tool,
    resolve,
    walk,
    workspace_root,
)
from stackblaze.build.toolchains import Interpreter, match_prefix, match_specifier
from stackblaze.spec.document import read_text
from stackblaze.spec.messages import fail, show
from stackblaze.spec.runtimes import label_in

VENV = "$DEPS/venv"
ENV = {"VIRTUAL_ENV": VENV, "PATH": f"{VENV}/bin:$PATH"}


def detect_python(tree: Tree) -> Parts:
    """First match wins: requirements.txt, pyproject.toml + uv.lock, + poetry.lock, Pipfile, pyproject.toml."""
    member = False
    if tree.has("requirements.txt"):
        manager = "pip"
    elif tree.has("pyproject.toml") and tree.has("uv.lock"):
        manager = "uv"
    elif tree.has("pyproject.toml") and tree.has("poetry.lock"):
        manager = "poetry"
    elif tree.has("Pipfile"):
        manager = "pipenv"
    elif workspace := workspace_root(tree, lambda d: (d / "uv.lock").is_file() and (d / "pyproject.toml").is_file()):
        manager, tree.copy_root, member = "uv", workspace, True
    else:
        manager = "pip ."
    request = python_request(tree)
    # uv makes its own venvs; the others need the interpreter's venv and ensurepip modules.
    python = resolve(tree, "python", request, match_python, usable=lambda i: manager == "uv" or i.pip is not None)
    py = shlex.quote(python.path)
    make_venv = f'{py} -m venv "{VENV}"'
    pip = f'"{VENV}/bin/pip" install --disable-pip-version-check --no-input'
    parts = Parts(resolved=python, env=dict(ENV), package_manager=manager, tool_version=python.pip)
    parts.asked(request)
    if manager == "pip":
        files, needs_source = _requirements(tree, "requirements.txt", set())
        parts.install = f"{make_venv} && {pip} -r requirements.txt"
        parts.lockfiles = tuple(walk(tree.dir)) if needs_source else files
        parts.install_needs_source = needs_source
    elif manager == "uv":
        parts.tool_version = require_tool(tree, "uv", asked_by=tree.label("uv.lock", at=tree.copy_root),
                                          fix="pip install uv")
        target = "--no-install-project"
        parts.lockfiles = ("pyproject.toml", "uv.lock")
        if member:
            name = _project_field(tree, tree.root, "name")
            target = "--no-install-workspace" + (f" --package {shlex.quote(name)}" if isinstance(name, str) else "")
            parts.lockfiles = ("uv.lock", *manifests(tree.copy_dir, "pyproject.toml"))
        parts.install = (f'UV_PROJECT_ENVIRONMENT="{VENV}" UV_PYTHON_DOWNLOADS=never uv sync --frozen --no-dev '
                         f"{target} --python {py}")
        tree.notes.append("uv sync installs the dependencies only: the project's own code runs from the release "
                          "directory, not from the venv")
    elif manager == "poetry":
        poetry = require_tool(tree, "poetry", asked_by=tree.label("poetry.lock"), fix="pip install poetry")
        parts.tool_version = poetry
        only_main = "--only main" if at_least(poetry, "1.2") else "--no-dev"
        parts.install = (f'{make_venv} && VIRTUAL_ENV="{VENV}" POETRY_VIRTUALENVS_CREATE=false poetry install '
                         f"--no-root --no-interaction {only_main}")
        parts.lockfiles = present(tree.dir, "pyproject.toml", "poetry.lock", "poetry.toml")
    elif manager == "pipenv":
        parts.tool_version = require_tool(tree, "pipenv", asked_by=tree.label("Pipfile"), fix="pip install pipenv")
        locked = tree.has("Pipfile.lock")
        parts.install = f'{make_venv} && VIRTUAL_ENV="{VENV}" PIPENV_VERBOSITY=-1 pipenv install' + (
            " --deploy" if locked else "")
        parts.lockfiles = present(tree.dir, "Pipfile", "Pipfile.lock")
        if not locked:
            tree.warnings.append(f"{tree.label('Pipfile')}: no Pipfile.lock, so versions are chosen at each install "
                                 "(run pipenv lock and commit Pipfile.lock)")
    else:
        # `pip install .` builds the project itself, so the install step needs the whole source: every file
        # is a lockfile (install_needs_source says so), and any code edit reinstalls everything.
        parts.package_manager = "pip"
        parts.install = f"{make_venv} && {pip} ."
        parts.lockfiles = tuple(walk(tree.dir))
        parts.install_needs_source = True
        tree.notes.append(f"{tree.label('pyproject.toml')} has no lockfile: pip install . needs the whole source, "
                          "so any code change reinstalls the dependencies (add uv.lock or poetry.lock to avoid it)")
    return parts


def python_request(tree: Tree) -> Request | None:
    """The version asked for by .python-version, then runtime.txt, then pyproject.toml's requires-python."""
    for root in tree.version_dirs():
        if found := first_line(tree, root, ".python-version"):
            text, number = found
            label = label_in(root, ".python-version")
            return Request(text.removeprefix("cpython-").removeprefix("python-"), f"{label}:{number}", label, label)
        if found := first_line(tree, root, "runtime.txt"):
            text, number = found
            label = label_in(root, "runtime.txt")
            if not text.startswith("python-"):
                raise fail(f"{label}:{number}", f"{show(text)} is not a Python version (write e.g. python-3.11.7)")
            return Request(text.removeprefix("python-"), f"{label}:{number}", label, label)
    for root in tree.version_dirs():
        spec = _project_field(tree, root, "requires-python")
        if isinstance(spec, str) and spec.strip():
            label = label_in(root, "pyproject.toml")
            number = line_of(tree.source / root / "pyproject.toml", "requires-python")
            return Request(spec.strip(), f"{label}:{number}: requires-python", f"{label} requires-python",
                           f"requires-python in {label}")
    return None


def match_python(request: str, installed: tuple[Interpreter, ...], default: Interpreter | None) -> Interpreter | None:
    """`3.11` -> the highest 3.11.x, `3.11.7` exactly, a range (`>=3.10`) -> the default if it fits."""
    if request == "system":
        return default
    if request[:1].isdigit() and not any(op in request for op in "<>=!~,"):
        return match_prefix(request, installed)
    return match_specifier(request, installed, prefer=default)


def _requirements(tree: Tree, name: str, seen: set[str]) -> tuple[tuple[str, ...], bool]:
    """A requirements file and the files it includes (-r, -c), and whether it installs local paths."""
    if name in seen or not (tree.dir / name).is_file():
        return (), False
    seen.add(name)
    files, needs_source = [name], False
    text = read_text(tree.dir / name, label=tree.label(name), max_bytes=MAX_FILE_BYTES)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        option, _, value = line.partition(" ")
        value = value.strip()
        if option in ("-r", "--requirement", "-c", "--constraint") and value:
            included = os.path.normpath(PurePosixPath(name).parent / value)
            more, local = _requirements(tree, included, seen)
            files += more
            needs_source = needs_source or local
        elif option in ("-e", "--editable") and value.startswith((".", "/", "file:")):
            needs_source = True
            tree.warnings.append(f"{tree.label(name)}:{number}: {show(line)} installs in editable mode from the "
                                 "install step's directory, which is deleted afterwards (write the path without -e)")
        elif line.startswith((".", "/", "file:")):
            needs_source = True
    return tuple(files), needs_source


def _project_field(tree: Tree, root: str, key: str) -> object:
    project = _pyproject(tree, root).get("project")
    return project.get(key) if isinstance(project, dict) else None


def _pyproject(tree: Tree, root: str) -> dict[str, Any]:
    path: Path = tree.source / root / "pyproject.toml"
    if not path.is_file():
        return {}
    label = label_in(root, "pyproject.toml")
    try:
        return tomllib.loads(read_text(path, label=label, max_bytes=MAX_FILE_BYTES))
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"line (\d+)", str(error))
        raise fail(f"{label}:{found.group(1) if found else 1}", f"invalid TOML: {error} (fix the file)") from None
