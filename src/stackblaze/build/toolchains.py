"""Which interpreters and package managers a machine has, and which one satisfies a version a project asks for.

`Toolchains` is the seam: `SystemToolchains` probes this machine (once per instance), `FakeToolchains` is a
table for tests (and for a machine described rather than probed, such as an image's base).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import nodesemver  # type: ignore[import-untyped]
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

Language = Literal["python", "node", "go", "ruby"]
LANGUAGES: tuple[Language, ...] = ("python", "node", "go", "ruby")
TOOLS = ("uv", "poetry", "pipenv", "npm", "pnpm", "yarn", "bun", "bundler", "corepack")
PROBE_SECONDS = 10.0

_VERSION = re.compile(r"\d+(?:\.\d+)+")
_PYTHON_NAME = re.compile(r"python3(?:\.\d+)?")
# Prints the real interpreter, its version and the pip a new venv gets (ensurepip's), or nothing for the
# last when it cannot make one (Debian without python3-venv, Python 2). Valid Python 2 and 3.
_PYTHON_PROBE = (
    "import sys\n"
    "try:\n"
    "    import ensurepip, venv\n"
    "    pip = ensurepip.version()\n"
    "except Exception:\n"
    "    pip = ''\n"
    "print(sys.executable)\n"
    "print('%d.%d.%d' % tuple(sys.version_info[:3]))\n"
    "print(pip)\n"
)


@dataclass(frozen=True)
class Interpreter:
    """One installed runtime: its full version and the executable to run."""

    version: str  # "3.11.7", "20.11.1", "1.22.3"
    path: str  # "/usr/bin/python3.11"
    pip: str | None = None  # python only: the pip a new venv gets; None when it cannot make a venv


class Toolchains(Protocol):
    """What a machine can build with."""

    @property
    def platform(self) -> str:
        """`os-arch`, e.g. linux-x86_64: part of every cache key."""
        ...

    def installed(self, language: Language) -> tuple[Interpreter, ...]:
        """Every interpreter of the language found, highest version first."""
        ...

    def default(self, language: Language) -> Interpreter | None:
        """The one a bare `python3` / `node` / `go` / `ruby` runs: used when the project asks for none."""
        ...

    def tool_version(self, tool: str) -> str | None:
        """The version of uv, poetry, pipenv, npm, pnpm, yarn, bun, bundler or corepack; None when it is missing."""
        ...


# -- picking a version ---------------------------------------------------------------------------------


def parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def match_prefix(request: str, candidates: Iterable[Interpreter]) -> Interpreter | None:
    """`3.11` (or `3.11.*`) is the highest 3.11.x; `3.11.7` is exactly that. Raises ValueError when not a version."""
    wanted = parse_version(request.removesuffix(".*"))
    if wanted is None or wanted.pre or wanted.dev or wanted.local or wanted.post:
        raise ValueError(request)
    parts = wanted.release
    found = [c for c in candidates if (v := parse_version(c.version)) and v.release[: len(parts)] == parts]
    return _highest(found)


def match_specifier(spec: str, candidates: Iterable[Interpreter], *, prefer: Interpreter | None) -> Interpreter | None:
    """A PEP 440 range (`>=3.10,<3.13`): the preferred interpreter when it fits, else the highest that does.

    Raises ValueError when spec is not a range.
    """
    try:
        allowed = SpecifierSet(spec)
    except InvalidSpecifier:
        raise ValueError(spec) from None
    fits = [c for c in candidates if (v := parse_version(c.version)) is not None and v in allowed]
    if prefer is not None and any(c.path == prefer.path for c in fits):
        return prefer
    return _highest(fits)


def match_node_range(request: str, candidates: Iterable[Interpreter]) -> Interpreter | None:
    """An npm semver range (`>=20`, `20.x`, `^20.1`, `18 || 20`, `v20.11.1`): the highest that satisfies it.

    Raises ValueError when request is not a range.
    """
    if nodesemver.valid_range(request, loose=True) is None:
        raise ValueError(request)
    by_version = {c.version: c for c in candidates}
    best = nodesemver.max_satisfying(list(by_version), request, loose=True)
    return by_version.get(best) if isinstance(best, str) else None


def match_minimum(minimum: str, candidates: Iterable[Interpreter], *, prefer: Interpreter | None) -> Interpreter | None:
    """At least `minimum` (go.mod's `go 1.22`): the preferred interpreter when new enough, else the highest."""
    return match_specifier(f">={minimum}", candidates, prefer=prefer)


def describe(candidates: Iterable[Interpreter]) -> str:
    """`3.10.13, 3.11.7` for an error message, or `none`."""
    versions = sorted({c.version for c in candidates}, key=lambda v: parse_version(v) or Version("0"))
    return ", ".join(versions) or "none"


def _highest(found: list[Interpreter]) -> Interpreter | None:
    return max(found, key=lambda c: parse_version(c.version) or Version("0"), default=None)


def _sorted(found: Iterable[Interpreter]) -> tuple[Interpreter, ...]:
    return tuple(sorted(found, key=lambda c: (parse_version(c.version) or Version("0"), c.path), reverse=True))


# -- this machine ----------------------------------------------------------------------------------------


class SystemToolchains:
    """Probes this machine: PATH, pyenv, uv's pythons, nvm, rbenv, /usr/local/go. Each probe runs once."""

    def __init__(self, *, path: str | None = None, home: Path | None = None) -> None:
        self._path = os.environ.get("PATH", os.defpath) if path is None else path
        self._home = Path.home() if home is None else home
        self._installed: dict[Language, tuple[Interpreter, ...]] = {}
        self._defaults: dict[Language, Interpreter | None] = {}
        self._tools: dict[str, str | None] = {}

    @property
    def platform(self) -> str:
        return f"{platform.system().lower()}-{platform.machine()}"

    def installed(self, language: Language) -> tuple[Interpreter, ...]:
        if language not in self._installed:
            candidates = self._candidates(language)
            default = self._which(_COMMANDS[language])
            with ThreadPoolExecutor(max_workers=8) as pool:
                probed = list(pool.map(lambda exe: self._probe(language, exe), [default, *candidates]))
            unique = {found.path: found for found in probed[1:] if found is not None}
            if probed[0] is not None:
                unique.setdefault(probed[0].path, probed[0])
            self._installed[language] = _sorted(unique.values())
            self._defaults[language] = probed[0]
        return self._installed[language]

    def default(self, language: Language) -> Interpreter | None:
        self.installed(language)
        return self._defaults[language]

    def tool_version(self, tool: str) -> str | None:
        if tool not in self._tools:
            command = "bundle" if tool == "bundler" else tool
            exe = self._which(command)
            output = self._run([exe, "--version"]) if exe else None
            match = _VERSION.search(output or "")
            self._tools[tool] = match.group(0) if match else None
        return self._tools[tool]

    def _which(self, command: str) -> str | None:
        return shutil.which(command, path=self._path)

    def fingerprint(self) -> tuple[object, ...]:
        """What the probes would see, cheaply (stats, no process): each searched directory's identity and
        mtime, which an install or removal in it changes, and where each probed command resolves to. A
        probe whose fingerprint changed is stale; one that found a tool missing is then redone."""
        directories = [*self._path.split(os.pathsep),
                       *(str(base) for language in LANGUAGES for base, _ in _managed(language, self._home))]
        stats = []
        for directory in dict.fromkeys(d for d in directories if d):
            try:
                found = os.stat(directory)
                stats.append((directory, found.st_ino, found.st_mtime_ns))
            except OSError:
                stats.append((directory, 0, 0))
        commands = [*_COMMANDS.values(), *("bundle" if tool == "bundler" else tool for tool in TOOLS)]
        resolved = [os.path.realpath(exe) if (exe := self._which(command)) else None for command in commands]
        return (*stats, *resolved)

    def _candidates(self, language: Language) -> list[str]:
        patterns = _managed(language, self._home)
        found = [str(match) for base, pattern in patterns if base.is_dir() for match in sorted(base.glob(pattern))]
        for directory in self._path.split(os.pathsep):
            # pyenv's shims only dispatch to the versions found above, and fail for the others.
            if not directory or Path(directory).name == "shims" or not Path(directory).is_dir():
                continue
            if language == "python":
                found += [str(Path(directory, name)) for name in sorted(os.listdir(directory))
                          if _PYTHON_NAME.fullmatch(name)]
            elif (exe := Path(directory, _COMMANDS[language])).is_file():
                found.append(str(exe))
        return list(dict.fromkeys(found))

    def _probe(self, language: Language, exe: str | None) -> Interpreter | None:
        if exe is None:
            return None
        if language == "python":
            lines = (self._run([exe, "-c", _PYTHON_PROBE]) or "").splitlines()
            if len(lines) < 2 or not lines[0]:
                return None
            return Interpreter(lines[1], os.path.realpath(lines[0]), (lines[2:] or [""])[0] or None)
        command = {
            "node": [exe, "-p", "process.execPath + ' ' + process.version.slice(1)"],
            "go": [exe, "env", "GOROOT", "GOVERSION"],
            "ruby": [exe, "-e", "print RbConfig.ruby, ' ', RUBY_VERSION"],
        }[language]
        words = (self._run(command) or "").split()
        if len(words) != 2:
            return None
        path, version = words
        if language == "go":  # GOROOT and go1.22.3
            path, version = str(Path(path, "bin", "go")), version.removeprefix("go")
        return Interpreter(version, os.path.realpath(path)) if _VERSION.fullmatch(version) else None

    def _run(self, argv: list[str]) -> str | None:
        # COREPACK_ENABLE_NETWORK=0: a corepack shim (yarn, pnpm) fails at once instead of downloading.
        env = {**os.environ, "PATH": self._path, "COREPACK_ENABLE_NETWORK": "0"}
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_SECONDS, env=env,
                                  stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None


_COMMANDS: dict[Language, str] = {"python": "python3", "node": "node", "go": "go", "ruby": "ruby"}


def _managed(language: Language, home: Path) -> list[tuple[Path, str]]:
    """Where version managers (pyenv, uv, nvm, n, rbenv...) keep a language's interpreters: (base, glob)."""
    return {
        "python": [(home / ".pyenv/versions", "*/bin/python3"), (home / ".local/share/uv/python", "*/bin/python3")],
        "node": [(home / ".nvm/versions/node", "*/bin/node"), (Path("/usr/local/n/versions/node"), "*/bin/node")],
        "go": [(Path("/usr/local/go"), "bin/go"), (home / "sdk", "go*/bin/go")],
        "ruby": [(home / ".rbenv/versions", "*/bin/ruby"), (home / ".rubies", "*/bin/ruby")],
    }[language]


# -- a machine described by a table ----------------------------------------------------------------------


class FakeToolchains:
    """A machine described by a table: its interpreters (the first of each is what PATH finds), its tools.

    `FakeToolchains(python=["3.11.7", "3.12.1"], node=["20.11.1"], tools={"npm": "10.2.4"})`; a version
    alone gets the path `/opt/<language>/<version>/bin/<command>` and, for python, pip 24.0.
    """

    def __init__(
        self,
        *,
        python: Iterable[Interpreter | str] = (),
        node: Iterable[Interpreter | str] = (),
        go: Iterable[Interpreter | str] = (),
        ruby: Iterable[Interpreter | str] = (),
        tools: Mapping[str, str] | None = None,
        platform: str = "linux-x86_64",
    ) -> None:
        given: dict[Language, Iterable[Interpreter | str]] = {"python": python, "node": node, "go": go, "ruby": ruby}
        self._table = {language: [self._interpreter(language, item) for item in items]
                       for language, items in given.items()}
        self._tools = dict(tools or {})
        self._platform = platform

    @staticmethod
    def _interpreter(language: Language, item: Interpreter | str) -> Interpreter:
        if isinstance(item, Interpreter):
            return item
        command = _COMMANDS[language]
        return Interpreter(item, f"/opt/{language}/{item}/bin/{command}", "24.0" if language == "python" else None)

    @property
    def platform(self) -> str:
        return self._platform

    def installed(self, language: Language) -> tuple[Interpreter, ...]:
        return _sorted(self._table[language])

    def default(self, language: Language) -> Interpreter | None:
        return next(iter(self._table[language]), None)

    def tool_version(self, tool: str) -> str | None:
        return self._tools.get(tool)
