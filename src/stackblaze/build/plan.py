"""BuildPlan: what detection decided for one service — runtime, version, installer, commands, cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

Runtime = Literal["python", "node", "go", "ruby", "procfile"]


@dataclass(frozen=True)
class BuildPlan:
    """Everything needed to build a release, decided without running anything.

    Commands are shell strings run with `/bin/sh -c` in the build directory. `$DEPS` in `install` is the
    dependency layer's directory (a venv, node_modules' parent, GOPATH...): it is built at its final path
    and shared by every release with the same cache key.

    The conventions `detect_plan` follows and the builder relies on:
    - `install` runs with cwd = a scratch directory holding only `lockfiles` (at their paths relative to
      `copy_root`) and env `DEPS=<the layer's final path>` plus `env`; it leaves python's venv at
      `$DEPS/venv`, node's `$DEPS/node_modules` (and workspace members' `$DEPS/<member>/node_modules`),
      ruby's gems at `$DEPS/bundle`, go's module cache at `$DEPS/gomod`. When `install_needs_source` is
      set (`pip install .`), `lockfiles` lists every file of `copy_root`, so the install sees the whole
      source and any code edit changes the cache key.
    - `env` values may name two placeholders, replaced as plain text (no other shell expansion): `$DEPS`
      (the layer's path) and `$PATH` (the PATH the process would have without this plan). The same env is
      used for `build` and for the start command.
    - `build` runs in the built tree at `workdir`; `start` runs there too. Before `build`, each path of
      `links` (relative to `copy_root`) that exists under `$DEPS` is symlinked from the tree to it.
    - `copy_root` is what is copied into the tree; it differs from `root` only in a monorepo workspace,
      where the lockfile lives above the service (e.g. copy_root ".", root "services/email").
    """

    service: str
    root: str  # the service's root, relative to the project (where detection and commands run)
    runtime: Runtime
    version: str | None  # the version asked for ("3.11", ">=20"), None when nothing asked
    version_source: str | None  # the file that asked (".python-version", "package.json engines.node")
    resolved_version: str | None  # what this machine provides and will be used ("3.11.7")
    package_manager: str | None  # pip, uv, poetry, pipenv, npm, pnpm, yarn, bun, go, bundler
    tool_version: str | None  # the package manager's version, part of the cache key
    install: str | None  # installs dependencies into $DEPS; only lockfiles are visible to it
    build: str | None  # runs in the release directory after the source is copied
    start: str
    lockfiles: tuple[str, ...]  # relative to copy_root: the install step's only inputs
    env: dict[str, str] = field(default_factory=dict)  # e.g. PATH with the venv's bin, VIRTUAL_ENV
    warnings: tuple[str, ...] = ()
    platform: str = ""  # e.g. linux-x86_64
    copy_root: str = "."  # relative to the project: what is copied (the workspace root in a monorepo)
    install_needs_source: bool = False  # `pip install .`: the install step sees all of copy_root
    links: tuple[str, ...] = ()  # relative to copy_root: symlinked to the same path under $DEPS if there
    start_source: str | None = None  # "Procfile", "package.json scripts.start", "go build"; None: the spec
    notes: tuple[str, ...] = ()  # decisions worth knowing that need no action (warnings need one)

    @property
    def workdir(self) -> str:
        """Where build and start run, relative to copy_root ("." unless in a monorepo workspace)."""
        return str(PurePosixPath(self.root).relative_to(self.copy_root))

    def cache_key(self, lockfile_digest: str) -> str:
        """The dependency layer's key: lockfiles, runtime version, tool version, platform."""
        material = json.dumps(
            [self.runtime, self.resolved_version, self.package_manager, self.tool_version, self.install,
             self.platform, lockfile_digest], sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
