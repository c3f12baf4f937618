"""Detection: a service's files -> BuildPlan (runtime, version, package manager, commands), running nothing.

Runtimes are tried in the order of `stackblaze.spec.runtimes.RUNTIMES` (go, ruby, python, node); the first
whose files are at the service's root wins, and a tree that matches more gets a warning naming them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from stackblaze.build.detection.go import detect_go
from stackblaze.build.detection.node import detect_node
from stackblaze.build.detection.python import detect_python
from stackblaze.build.detection.ruby import detect_ruby
from stackblaze.build.detection.tree import Parts, Tree
from stackblaze.build.logfiles import logfile_warnings
from stackblaze.build.plan import BuildPlan, Runtime
from stackblaze.build.signals import start_warnings
from stackblaze.build.toolchains import Toolchains
from stackblaze.errors import SpecError
from stackblaze.spec import Service
from stackblaze.spec.messages import show
from stackblaze.spec.runtimes import MARKERS, matching_runtimes

DETECTORS: dict[str, Callable[[Tree], Parts]] = {
    "python": detect_python, "node": detect_node, "go": detect_go, "ruby": detect_ruby,
}
# A build: that installs again what the plan's install step already installed into the cached layer.
_INSTALLER = re.compile(
    r"(?:^|[;&|]\s*)(?:npm (?:ci|install|i)\b|pnpm (?:install|i)\b|yarn(?: install)?\s*(?:$|[;&|])|bun install\b"
    r"|(?:\S*/)?pip3? install\b|\S*python\S* -m pip install\b|uv sync\b|poetry install\b|pipenv install\b"
    r"|bundle install\b|go mod download\b)"
)


def detect_plan(source: Path, service: Service, *, toolchains: Toolchains) -> BuildPlan:
    """Decide how to build `service` of the project at `source`; a one-line SpecError when it cannot."""
    tree = Tree(source=source, root=service.root, service=service, toolchains=toolchains)
    runtime = _choose_runtime(tree)
    parts = DETECTORS[runtime](tree) if runtime != "procfile" else Parts()
    build = parts.build
    if service.build is not None:
        build = service.build
        if parts.install and _INSTALLER.search(service.build):
            tree.warnings.append(
                f"build: {show(service.build)} installs the dependencies again on every build, outside the cached "
                f"layer that `{parts.install}` installs from the lockfiles (remove the install from build:)"
            )
    if service.start_source == "package.json scripts.start":
        tree.notes.append(f"start: package.json scripts.start runs directly as {show(service.start)}, not through "
                          "npm start, so that the worker itself gets the stop signal")
    tree.warnings.extend(start_warnings(service.start, tree.dir))
    tree.warnings.extend(logfile_warnings(service.start))
    return BuildPlan(
        service=service.name,
        root=service.root,
        runtime=runtime,
        version=parts.version,
        version_source=parts.version_source,
        resolved_version=parts.resolved.version if parts.resolved else None,
        package_manager=parts.package_manager,
        tool_version=parts.tool_version,
        install=parts.install,
        build=build,
        start=service.start,
        lockfiles=parts.lockfiles,
        env=parts.env,
        warnings=tuple(tree.warnings),
        platform=toolchains.platform,
        copy_root=tree.copy_root,
        install_needs_source=parts.install_needs_source,
        links=parts.links,
        start_source=service.start_source,
        notes=tuple(tree.notes),
    )


def _choose_runtime(tree: Tree) -> Runtime:
    matches = matching_runtimes(tree.dir)
    where = "the project root" if tree.root == "." else tree.root
    declared = tree.service.runtime
    if declared is not None:
        if declared not in matches:
            wanted = " or ".join(MARKERS[declared])
            raise SpecError(f"services.{tree.service.name}.runtime: {declared} needs {wanted} in {where} "
                            "(add it, or change runtime:)")
        return declared
    if not matches:
        return "procfile"
    if len(matches) > 1:
        found = [f"{runtime} ({', '.join(m for m in MARKERS[runtime] if tree.has(m))})" for runtime in matches]
        listed = ", ".join(found[:-1]) + " and " + found[-1]
        others = " or ".join(f"runtime: {runtime}" for runtime in matches[1:])
        tree.warnings.append(f"{where} matches {listed}; building it as {matches[0]}, the first in detection "
                             f"order (set {others} to build it otherwise)")
    return matches[0]
