"""Node: npm, pnpm, yarn or bun (packageManager, else the lockfile), installed into `$DEPS/node_modules`."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from stackblaze.build.detection.corepack import BIN as COREPACK_BIN
from stackblaze.build.detection.corepack import corepack_env, install_prefix, provide
from stackblaze.build.detection.tree import (
    Parts,
    Request,
    Tree,
    at_least,
    files_under,
    first_line,
    line_of,
    manifests,
    present,
    require_tool,
    resolve,
    workspace_root,
)
from stackblaze.build.toolchains import match_node_range
from stackblaze.spec.messages import fail, show
from stackblaze.spec.runtimes import label_in, read_package_json

LOCKFILES = {  # in the order they are looked for
    "pnpm-lock.yaml": "pnpm", "yarn.lock": "yarn", "bun.lock": "bun", "bun.lockb": "bun",
    "package-lock.json": "npm", "npm-shrinkwrap.json": "npm",
}
CONFIG = (".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml", ".pnpmfile.cjs", "bunfig.toml")
CONFIG_DIRS = (".yarn/releases", ".yarn/plugins", ".yarn/patches", "patches")
# Root scripts that npm, pnpm and yarn run during install, where only the lockfiles are present.
INSTALL_SCRIPTS = ("preinstall", "install", "postinstall", "prepare")


def detect_node(tree: Tree) -> Parts:
    manifest = read_package_json(tree.dir / "package.json", label=tree.label("package.json"))
    lockfile = next((name for name in LOCKFILES if tree.has(name)), None)
    if lockfile is None and (workspace := workspace_root(tree, _is_workspace_root)):
        # A workspace member: the lockfile, and so the install, belongs to the workspace root above it.
        tree.copy_root = workspace
        lockfile = next(name for name in LOCKFILES if (tree.copy_dir / name).is_file())
    top = manifest if tree.copy_root == tree.root else read_package_json(
        tree.copy_dir / "package.json", label=label_in(tree.copy_root, "package.json"))
    manager, asked_version, asked_by = _manager(tree, top, lockfile)
    request = node_request(tree, manifest, top)
    node = resolve(tree, "node", request, lambda wanted, installed, _: match_node_range(wanted, installed))
    parts = Parts(resolved=node, package_manager=manager)
    parts.asked(request)
    pinned = f"{manager}@{asked_version}" if asked_version else manager
    fix = "Node.js with npm" if manager == "npm" else f"npm install -g {pinned}, or corepack enable {manager}"
    provided = None
    if manager in ("yarn", "pnpm") and tree.toolchains.tool_version(manager) is None \
            and tree.toolchains.tool_version("corepack") is not None:
        provided = provide(tree, manager, top, lockfile)
        installed = provided.version
        tree.notes.append(f"{manager} is not on the PATH: corepack provides {manager} {installed} "
                          f"({provided.why}) in the dependency layer")
    else:
        installed = require_tool(tree, manager, asked_by=asked_by, fix=fix)
    parts.tool_version = installed
    if asked_version and installed.split(".")[0] != asked_version.split(".")[0]:
        tree.warnings.append(f"{asked_by}: asks for {manager} {asked_version}, this machine has {manager} {installed} "
                             f"(run corepack enable {manager} to use the version asked for)")
    parts.install = _install(manager, installed, locked=lockfile is not None)
    if provided is not None:
        parts.install = install_prefix(manager, provided) + parts.install
    if lockfile is None:
        tree.notes.append(f"no lockfile: {manager} chooses dependency versions at each install "
                          f"(commit the lockfile {manager} writes)")
    members = [str(PurePosixPath(path).parent) for path in manifests(tree.copy_dir, "package.json")]
    members = [member for member in members if member != "."]
    parts.lockfiles = (*present(tree.copy_dir, "package.json", *([lockfile] if lockfile else []), *CONFIG),
                       *[f"{member}/package.json" for member in members], *files_under(tree.copy_dir, CONFIG_DIRS))
    parts.links = ("node_modules", *[f"{member}/node_modules" for member in members])
    bins = ([f"$DEPS/{tree.workdir}/node_modules/.bin"] if tree.workdir != "." else []) + ["$DEPS/node_modules/.bin"]
    parts.env = {"PATH": ":".join([*bins, *([COREPACK_BIN] if provided else []), "$PATH"])}
    if provided is not None:
        parts.env.update(corepack_env())
    if isinstance(_scripts(manifest).get("build"), str):
        parts.build = f"{manager} run build"
    for name in INSTALL_SCRIPTS:
        if isinstance(_scripts(top).get(name), str):
            tree.warnings.append(
                f"{label_in(tree.copy_root, 'package.json')}: scripts.{name} runs during install, which sees only "
                "the lockfiles and not your code (move it into scripts.build if it needs the code)")
    return parts


def node_request(tree: Tree, manifest: dict[str, Any], top: dict[str, Any]) -> Request | None:
    """The version asked for by engines.node, then .nvmrc, then .node-version."""
    found = [(tree.root, manifest)] + ([(tree.copy_root, top)] if tree.copy_root != tree.root else [])
    for root, data in found:
        engines = data.get("engines")
        wanted = engines.get("node") if isinstance(engines, dict) else None
        if wanted is not None:
            label = label_in(root, "package.json")
            where = f"{label}:{line_of(tree.source / root / 'package.json', 'engines', 'node')}: engines.node"
            if not isinstance(wanted, str):
                raise fail(where, f'{show(wanted)} is not a version range (e.g. "node": ">=20")')
            return Request(wanted.strip(), where, f"{label} engines.node", f"engines.node in {label}")
    for root in tree.version_dirs():
        for name in (".nvmrc", ".node-version"):
            if line := first_line(tree, root, name):
                text, number = line
                label = label_in(root, name)
                # nvm's aliases (node, stable, lts/*) name no version this machine could check: any will do.
                wanted = "*" if text in ("node", "stable") or text.startswith("lts/") else text
                return Request(wanted, f"{label}:{number}", label, label)
    return None


def _is_workspace_root(directory: Path) -> bool:
    return (directory / "package.json").is_file() and any((directory / name).is_file() for name in LOCKFILES)


def _scripts(manifest: dict[str, Any]) -> dict[str, Any]:
    scripts = manifest.get("scripts")
    return scripts if isinstance(scripts, dict) else {}


def _manager(tree: Tree, top: dict[str, Any], lockfile: str | None) -> tuple[str, str | None, str]:
    """(manager, the version packageManager asks for, what asked) from packageManager, else the lockfile."""
    value = top.get("packageManager")
    label = label_in(tree.copy_root, "package.json")
    if value is not None:
        where = f"{label}:{line_of(tree.copy_dir / 'package.json', 'packageManager')}: packageManager"
        match = re.fullmatch(r"(npm|pnpm|yarn|bun)@(\d[^+\s]*)(?:\+\S*)?", value) if isinstance(value, str) else None
        if match is None:
            raise fail(where, f"{show(value)} is not npm, pnpm, yarn or bun with a version "
                              '(e.g. "packageManager": "pnpm@9.1.0")')
        return match.group(1), match.group(2), where
    if lockfile is not None:
        return LOCKFILES[lockfile], None, label_in(tree.copy_root, lockfile)
    return "npm", None, label


def _install(manager: str, version: str, *, locked: bool) -> str:
    # Installed at its final path: the lockfiles are copied into $DEPS and the install runs there, so that
    # native modules built by install scripts keep working (they may record absolute paths).
    prefix = 'mkdir -p "$DEPS" && cp -R ./. "$DEPS/" && cd "$DEPS" && '
    if manager == "npm":
        return prefix + ("npm ci" if locked else "npm install") + " --no-audit --no-fund"
    if manager == "pnpm":
        return prefix + "pnpm install" + (" --frozen-lockfile" if locked else "")
    if manager == "yarn":
        if not at_least(version, "2"):
            return prefix + "yarn install --non-interactive" + (" --frozen-lockfile" if locked else "")
        # Yarn 2+ defaults to Plug'n'Play, which leaves no node_modules to share between releases.
        return prefix + "YARN_NODE_LINKER=node-modules yarn install" + (" --immutable" if locked else "")
    return prefix + "bun install" + (" --frozen-lockfile" if locked else "")
