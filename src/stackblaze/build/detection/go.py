"""Go: modules downloaded into `$DEPS/gomod` from go.mod and go.sum, then `go build` into `.stackblaze/bin`;
without go.mod, GOPATH mode (gopath.py)."""

from __future__ import annotations

import shlex

from stackblaze.build.detection.gopath import detect_gopath
from stackblaze.build.detection.tree import MAX_FILE_BYTES, Parts, Request, Tree, resolve
from stackblaze.build.toolchains import match_minimum
from stackblaze.spec.document import read_text
from stackblaze.spec.runtimes import GO_BINARY_DIR


def detect_go(tree: Tree) -> Parts:
    if not tree.has("go.mod"):  # a tree from before modules (vendor/, Godeps, dep), or one that needs a go.mod
        return detect_gopath(tree, resolve(tree, "go", None, lambda *_: None))
    label = tree.label("go.mod")
    text = read_text(tree.dir / "go.mod", label=label, max_bytes=MAX_FILE_BYTES)
    request = None
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("//", 1)[0].split()
        if len(words) == 2 and words[0] in ("go", "toolchain"):
            # `go 1.22` is a minimum; a later `toolchain go1.22.3` raises it.
            request = Request(words[1].removeprefix("go"), f"{label}:{number}", label, label)
    go = resolve(tree, "go", request, lambda wanted, installed, default: match_minimum(wanted, installed,
                                                                                       prefer=default))
    # GOTOOLCHAIN=local: go must not try to download a newer toolchain than the one resolved here.
    parts = Parts(resolved=go, package_manager="go", tool_version=go.version, env={"GOTOOLCHAIN": "local"})
    parts.asked(request)
    exe = shlex.quote(go.path)
    if tree.has("go.sum") and not (tree.dir / "vendor").is_dir():
        parts.install = f'GOMODCACHE="$DEPS/gomod" {exe} mod download'
        parts.lockfiles = ("go.mod", "go.sum")
        parts.env["GOMODCACHE"] = "$DEPS/gomod"
    name = tree.service.name
    package = "."
    if not any(tree.dir.glob("*.go")) and (tree.dir / "cmd").is_dir():
        commands = sorted(path.name for path in (tree.dir / "cmd").iterdir() if path.is_dir())
        package = f"./cmd/{name}" if name in commands else (f"./cmd/{commands[0]}" if len(commands) == 1 else ".")
    parts.build = f"{exe} build -o {GO_BINARY_DIR}/{name} {package}"
    return parts
