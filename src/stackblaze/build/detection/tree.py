"""The service tree being detected, what a runtime's detection returns, and the helpers they share."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from stackblaze.build.release import IGNORED
from stackblaze.build.toolchains import Interpreter, Language, Toolchains, describe
from stackblaze.errors import SpecError
from stackblaze.spec import Service
from stackblaze.spec.document import read_text
from stackblaze.spec.messages import fail, show
from stackblaze.spec.runtimes import label_in

MAX_FILE_BYTES = 1024 * 1024
SKIPPED_DIRS = {*IGNORED, "node_modules", ".venv", "venv", ".tox", ".nox"}
MARKER: dict[Language, str] = {"python": "requirements.txt", "node": "package.json", "go": "go.mod", "ruby": "Gemfile"}
EXAMPLES: dict[Language, str] = {"python": "3.11", "node": ">=20", "go": "1.22", "ruby": "3.2"}
Match = Callable[[str, tuple[Interpreter, ...], Interpreter | None], Interpreter | None]


@dataclass
class Tree:
    """The service being detected: where its files are, how errors name them, what detection noticed."""

    source: Path  # the project
    root: str  # the service's root, relative to the project
    service: Service
    toolchains: Toolchains
    copy_root: str = ""  # set by a detector when a workspace's lockfile lives above the root
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.copy_root = self.copy_root or self.root

    @property
    def dir(self) -> Path:
        return self.source / self.root

    @property
    def copy_dir(self) -> Path:
        return self.source / self.copy_root

    @property
    def workdir(self) -> str:
        return str(PurePosixPath(self.root).relative_to(self.copy_root))

    def label(self, name: str, *, at: str | None = None) -> str:
        return label_in(self.root if at is None else at, name)

    def has(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def version_dirs(self) -> list[str]:
        """Where version files are looked for: the service's root, then the workspace root."""
        return list(dict.fromkeys([self.root, self.copy_root]))


@dataclass
class Parts:
    """What one runtime's detection decided; detect_plan adds what the spec says."""

    version: str | None = None
    version_source: str | None = None
    resolved: Interpreter | None = None
    package_manager: str | None = None
    tool_version: str | None = None
    install: str | None = None
    build: str | None = None
    lockfiles: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    install_needs_source: bool = False
    links: tuple[str, ...] = ()

    def asked(self, request: Request | None) -> None:
        if request is not None:
            self.version, self.version_source = request.text, request.source


@dataclass(frozen=True)
class Request:
    """A version a file asks for."""

    text: str  # what was asked, as written ("3.11", ">=20")
    where: str  # `file:line` (and field) for errors
    source: str  # the file (and field) that asked, for BuildPlan.version_source
    fix: str  # what to change, for "install it or change ..."


def first_line(tree: Tree, root: str, name: str) -> tuple[str, int] | None:
    """The first line of a version file that is not blank or a comment, and its number."""
    path = tree.source / root / name
    if not path.is_file():
        return None
    text = read_text(path, label=label_in(root, name), max_bytes=MAX_FILE_BYTES)
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.strip().startswith("#"):
            return line.strip(), number
    return None


def resolve(
    tree: Tree, language: Language, request: Request | None, match: Match,
    *, usable: Callable[[Interpreter], bool] = lambda _: True,
) -> Interpreter:
    """The interpreter for request (the machine's default when nothing asked); errors name the asking file."""
    installed = tuple(found for found in tree.toolchains.installed(language) if usable(found))
    default = tree.toolchains.default(language)
    if default is not None and not usable(default):
        default = None
    if request is None:
        chosen = default or (installed[0] if installed else None)
        if chosen is None:
            raise SpecError(f"{tree.label(MARKER[language])}: {language} is needed but not installed here "
                            "(install it)")
        return chosen
    try:
        chosen = match(request.text, installed, default)
    except ValueError:
        raise fail(request.where, f"{show(request.text)} is not a {language} version (e.g. {EXAMPLES[language]})") \
            from None
    if chosen is None:
        raise fail(request.where, f"{language} {request.text} is not installed here (installed: "
                                  f"{describe(installed)}; install it or change {request.fix})")
    return chosen


def require_tool(tree: Tree, tool: str, *, asked_by: str, fix: str) -> str:
    """The installed version of a package manager; an error naming what asked for it when it is missing."""
    version = tree.toolchains.tool_version(tool)
    if version is None:
        raise SpecError(f"{asked_by}: {tool} is needed but not installed here (install it: {fix})")
    return version


def at_least(version: str, minimum: str) -> bool:
    numbers = [int(part) for part in re.findall(r"\d+", version)[:3]]
    return numbers >= [int(part) for part in minimum.split(".")]


def line_of(path: Path, *keys: str) -> int:
    """The line of the last of keys, each searched after the one before (`engines` then `node`); else 1."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 1
    position = 0
    for key in keys:
        found = re.compile(rf'"?{re.escape(key)}"?\s*[:=]').search(text, position)
        if found is None:
            return 1
        position = found.start()
    return text.count("\n", 0, position) + 1


def workspace_root(tree: Tree, is_root: Callable[[Path], bool]) -> str | None:
    """The nearest directory above the service's root, inside the project, that is a workspace's root."""
    for parent in PurePosixPath(tree.root).parents:
        if is_root(tree.source / parent):
            return str(parent)
    return None


def present(directory: Path, *names: str) -> tuple[str, ...]:
    return tuple(name for name in names if (directory / name).is_file())


def walk(directory: Path) -> Iterator[str]:
    """Every file under directory, relative to it, sorted, skipping VCS, caches and installed dependencies."""
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            yield Path(current, name).relative_to(directory).as_posix()


def manifests(directory: Path, name: str) -> tuple[str, ...]:
    """Every `name` under directory (a workspace's members), the root's first."""
    return tuple(path for path in walk(directory) if PurePosixPath(path).name == name)


def files_under(directory: Path, subdirs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{sub}/{path}" for sub in subdirs if (directory / sub).is_dir() for path in walk(directory / sub))
