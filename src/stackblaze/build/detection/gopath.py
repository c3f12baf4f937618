"""Go before modules: a tree with vendored dependencies (govendor, Godeps, dep) and no go.mod, built in GOPATH
mode (`GO111MODULE=off`) at its import path, its commands installed into `$DEPS/bin` on the replicas' PATH.

The build runs as the install step, which then sees the whole source (as `pip install .` does): `go install`
needs the code, and only the dependency layer has a path known before the build (`$DEPS`) that a plan can
put on the replicas' PATH — a Procfile's `worker: myworker` then runs the binary by name, as on Heroku.
"""

from __future__ import annotations

import json
import re
import shlex

from stackblaze.build.detection.tree import MAX_FILE_BYTES, Parts, Tree, walk
from stackblaze.build.toolchains import Interpreter
from stackblaze.errors import SpecError
from stackblaze.spec.document import read_text
from stackblaze.spec.runtimes import GO_BINARY_DIR

# (file, the tool that writes it), in the order an import path is looked for.
METADATA = (("vendor/vendor.json", "govendor"), ("Godeps/Godeps.json", "godep"), ("Gopkg.toml", "dep"),
            ("Gopkg.lock", "dep"))
# `package main // import "github.com/acme/myworker"`: Go's import comment, the canonical path.
_IMPORT_COMMENT = re.compile(r'^package\s+\w+\s*(?://\s*import\s+"([^"]+)"|/\*\s*import\s+"([^"]+)"\s*\*/)',
                             re.MULTILINE)
_IMPORT_PATH = re.compile(r"[A-Za-z0-9_.~-]+(?:/[A-Za-z0-9_.~-]+)*")
_BARE_COMMAND = re.compile(r"[A-Za-z0-9_.-]+")


def is_gopath_tree(tree: Tree) -> bool:
    return any(tree.has(name) for name, _ in METADATA) or (tree.dir / "vendor").is_dir()


def detect_gopath(tree: Tree, go: Interpreter) -> Parts:
    """GOPATH mode for a tree without go.mod; a one-line SpecError naming the fix when it is not one."""
    where = "the project root" if tree.root == "." else tree.root
    if not is_gopath_tree(tree):
        raise SpecError(f"{tree.label('go.mod')}: {where} has Go files but no go.mod and no vendored dependencies "
                        "(add a go.mod: go mod init <import path>, or vendor metadata: vendor/vendor.json, "
                        "Godeps/Godeps.json or Gopkg.toml)")
    tool = next((name for file, name in METADATA if tree.has(file)), "vendor")
    path, source = _import_path(tree)
    said = f"no go.mod: GOPATH mode (GO111MODULE=off) at $GOPATH/src/{path} (the import path from {source})"
    tree.notes.append(f"{said}; go install ./... puts the commands on the replicas' PATH")
    exe = shlex.quote(go.path)
    src = f'"$DEPS/gopath/src/{path}"'
    parts = Parts(resolved=go, package_manager=tool)  # govendor, godep and dep do not run: go is the tool
    # Godeps' older layout keeps the dependencies in Godeps/_workspace, a GOPATH of its own.
    gopath = '"$DEPS/gopath:$DEPS/gopath/src/' + path + '/Godeps/_workspace"'
    parts.install = (
        f"echo {shlex.quote('==> ' + said)} && "
        f'mkdir -p {src} && cp -R ./. {src}/ && cd {src} && '
        f'GO111MODULE=off GOFLAGS= GOPATH={gopath} GOBIN="$DEPS/bin" {exe} install -v ./... && '
        # The sources are in the release already; the layer keeps the commands.
        'rm -rf "$DEPS/gopath" && echo "==> installed on the PATH: $(ls "$DEPS/bin" | tr \'\\n\' \' \')"'
    )
    if tree.service.start_source == "go build":
        # No start command given: the default, `.stackblaze/bin/<service>`, is the root package's command
        # (go install names it after the import path's last element), copied into the release.
        command = shlex.quote(path.rsplit("/", 1)[-1])
        parts.build = (f'mkdir -p {GO_BINARY_DIR} && cp "$DEPS/bin/"{command} '
                       f'{GO_BINARY_DIR}/{shlex.quote(tree.service.name)}')
    parts.lockfiles = tuple(walk(tree.dir))
    parts.install_needs_source = True
    parts.env = {"PATH": "$DEPS/bin:$PATH", "GO111MODULE": "off", "GOTOOLCHAIN": "local"}
    return parts


def _import_path(tree: Tree) -> tuple[str, str]:
    """Where the tree goes under $GOPATH/src, and which file (or command) said so."""
    found: list[tuple[str, str]] = []
    for name, key in (("vendor/vendor.json", "rootPath"), ("Godeps/Godeps.json", "ImportPath")):
        if tree.has(name):
            data = _json(tree, name)
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, str) and value:
                found.append((value, f"{tree.label(name)} {key}"))
    if tree.has("Gopkg.toml"):
        text = read_text(tree.dir / "Gopkg.toml", label=tree.label("Gopkg.toml"), max_bytes=MAX_FILE_BYTES)
        if match := re.search(r'^\s*root-package\s*=\s*"([^"]+)"', text, re.MULTILINE):  # Heroku's metadata
            found.append((match.group(1), f"{tree.label('Gopkg.toml')} root-package"))
    for file in sorted(tree.dir.glob("*.go")):
        text = read_text(file, label=tree.label(file.name), max_bytes=MAX_FILE_BYTES)
        if match := _IMPORT_COMMENT.search(text):
            found.append((match.group(1) or match.group(2), f"the import comment in {tree.label(file.name)}"))
            break
    command = tree.service.start.split()[0] if tree.service.start.split() else ""
    if _BARE_COMMAND.fullmatch(command) and "." not in command:
        # `worker: myworker`: go install names a command after its directory, so that is the path.
        found.append((command, f"the start command: {command}"))
    for path, source in found:
        if _IMPORT_PATH.fullmatch(path) and ".." not in path.split("/"):
            return path, source
    files = " or ".join(name for name, _ in METADATA[:3])
    place = next((name for name, _ in METADATA if tree.has(name)), "vendor")
    raise SpecError(f"{tree.label(place)}: no import path for GOPATH mode (set rootPath in vendor/vendor.json, "
                    f'ImportPath in Godeps/Godeps.json or root-package in Gopkg.toml; add `// import "<path>"` '
                    f"after `package main`; or add a go.mod) — looked in {files} and the .go files")


def _json(tree: Tree, name: str) -> object:
    text = read_text(tree.dir / name, label=tree.label(name), max_bytes=MAX_FILE_BYTES)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"{tree.label(name)}:{error.lineno}: invalid JSON: {error.msg} (fix the file)") from None
