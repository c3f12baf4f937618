"""BuildPlan: what detection decided for one service — runtime, version, installer, commands, cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Runtime = Literal["python", "node", "go", "ruby", "procfile"]


@dataclass(frozen=True)
class BuildPlan:
    """Everything needed to build a release, decided without running anything.

    Commands are shell strings run with `/bin/sh -c` in the build directory. `$DEPS` in `install` is the
    dependency layer's directory (a venv, node_modules' parent, GOPATH...): it is built at its final path
    and shared by every release with the same cache key.
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
    lockfiles: tuple[str, ...]  # relative to root: the install step's only inputs
    env: dict[str, str] = field(default_factory=dict)  # e.g. PATH with the venv's bin, VIRTUAL_ENV
    warnings: tuple[str, ...] = ()
    platform: str = ""  # e.g. linux-x86_64

    def cache_key(self, lockfile_digest: str) -> str:
        """The dependency layer's key: lockfiles, runtime version, tool version, platform."""
        material = json.dumps(
            [self.runtime, self.resolved_version, self.package_manager, self.tool_version, self.install,
             self.platform, lockfile_digest], sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
