"""The runtimes stackblaze builds and the files that announce each, in detection order (first match wins).

The spec needs them to check `runtime:` and to give a service without `start:` its runtime's default
command; build detection uses the same order, so the two never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from stackblaze.spec.document import read_text
from stackblaze.spec.messages import did_you_mean, fail, show
from stackblaze.spec.model import Runtime

# Go and Ruby first, Node last (Railpack's order; Nixpacks puts Node before Python): a package.json is the
# file most often present only to build assets or run linters, while a go.mod or a Gemfile rarely is.
RUNTIMES: tuple[Runtime, ...] = ("go", "ruby", "python", "node")
MARKERS: dict[Runtime, tuple[str, ...]] = {
    "go": ("go.mod", "vendor/vendor.json", "Godeps/Godeps.json", "Gopkg.toml", "Gopkg.lock"),  # before modules too
    "ruby": ("Gemfile",),
    "python": ("requirements.txt", "pyproject.toml", "Pipfile"),
    "node": ("package.json",),
}
GO_BINARY_DIR = ".stackblaze/bin"  # where the Go build puts a service's binary, relative to its root
MAX_MANIFEST_BYTES = 1024 * 1024


def matching_runtimes(root: Path) -> tuple[Runtime, ...]:
    """Every runtime whose marker files are at root, in detection order."""
    found = tuple(runtime for runtime in RUNTIMES if any((root / name).is_file() for name in MARKERS[runtime]))
    if not found and any(root.glob("*.go")):
        return ("go",)  # Go files and nothing else: Go, so that its build says what it lacks (a go.mod)
    return found


def check_runtime(value: object, *, where: str, directory: Path, root: str) -> Runtime:
    """Return the runtime named by `runtime:`, when the service's root has its files."""
    for runtime in RUNTIMES:
        if value == runtime:
            if runtime not in matching_runtimes(directory):
                place = "the project directory" if root == "." else root
                files = " or ".join(MARKERS[runtime])
                raise fail(where, f"{show(value)} needs {files} in {place} (add it, or remove runtime:)")
            return runtime
    guess = did_you_mean(value, RUNTIMES)
    hint = f"did you mean {guess}? " if guess else ""
    raise fail(where, f"{show(value)} is not a runtime ({hint}e.g. runtime: python, node, go or ruby)")


def label_in(root: str, name: str) -> str:
    """How errors name a file at a service root: `package.json`, or `services/email/package.json`."""
    return name if root == "." else str(PurePosixPath(root, name))


def read_package_json(path: Path, *, label: str) -> dict[str, Any]:
    """The object in a package.json; every failure is a SpecError starting `label:`."""
    text = read_text(path, label=label, max_bytes=MAX_MANIFEST_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(f"{label}:{error.lineno}", f"invalid JSON: {error.msg} (fix the file)") from None
    if not isinstance(data, dict):
        raise fail(f"{label}:1", f"{show(data)} is not a JSON object (write it as {{...}})")
    return data


def default_start(source: Path, root: str, *, service: str, runtime: Runtime | None) -> tuple[str, str] | None:
    """The command a service runs when neither stackblaze.yaml nor a Procfile says, and where it came from.

    Node: the command of `scripts.start`, run directly rather than through `npm start`, which would keep
    npm and a shell between the worker and its stop signal. Go: the binary the build makes.
    """
    directory = source / root
    chosen = runtime or next(iter(matching_runtimes(directory)), None)
    if chosen == "go":
        return f"{GO_BINARY_DIR}/{service}", "go build"
    if chosen == "node" and (directory / "package.json").is_file():
        manifest = read_package_json(directory / "package.json", label=label_in(root, "package.json"))
        scripts = manifest.get("scripts")
        command = scripts.get("start") if isinstance(scripts, dict) else None
        if isinstance(command, str) and command.strip() and "\0" not in command:
            return command.strip(), "package.json scripts.start"
    return None
