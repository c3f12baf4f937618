"""yarn and pnpm provided by corepack (shipped with Node.js) when the machine lacks them.

The version is the one package.json's packageManager names, else the lockfile's generation's. corepack
puts the tool and its shims inside the dependency layer (`$DEPS/corepack`), so the install, the build and
the replicas all run the version the layer was made with, and nothing outside STACKBLAZE_HOME changes.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from stackblaze.build.detection.tree import MAX_FILE_BYTES, Tree
from stackblaze.spec.document import read_text
from stackblaze.spec.runtimes import label_in

# corepack 0.34's own defaults where it has one (with the hash it checks), else the last release of the
# major that writes the lockfile's generation. Ranges are no good: corepack resolves them on
# repo.yarnpkg.com, which a machine that reaches only the npm registry cannot.
YARN_CLASSIC = "1.22.22+sha1.ac34549e6aa8e7ead463a7407e1c7390f61a6610"
YARN_BERRY = {4: "2.4.3", 5: "3.1.1", 6: "3.8.7", 7: "3.8.7", 8: "4.12.0"}  # __metadata.version -> yarn
PNPM = {"5.3": "6.35.1", "5.4": "7.33.7", "6": "8.15.9", "7": "9.15.9", "9": "9.15.9"}  # lockfileVersion -> pnpm
DEFAULT = {"yarn": YARN_CLASSIC, "pnpm": "9.15.9"}
HOME = "$DEPS/corepack"
BIN = f"{HOME}/bin"


@dataclass(frozen=True)
class Provided:
    """A package manager corepack will install into the dependency layer."""

    version: str  # "1.22.22"
    spec: str  # what corepack is given: "yarn@1.22.22+sha1.ac34..."
    why: str  # "package.json packageManager", "yarn.lock (yarn lockfile v1)"


def provide(tree: Tree, manager: str, top: dict[str, Any], lockfile: str | None) -> Provided:
    """The version of `manager` to ask corepack for: packageManager's (hash kept), else the lockfile's."""
    value = top.get("packageManager")
    if isinstance(value, str) and value.startswith(f"{manager}@"):
        spec = value.split("@", 1)[1]
        return Provided(spec.split("+", 1)[0], f"{manager}@{spec}",
                        f"{label_in(tree.copy_root, 'package.json')} packageManager")
    spec, generation = _from_lockfile(tree, manager, lockfile)
    return Provided(spec.split("+", 1)[0], f"{manager}@{spec}", generation)


def _from_lockfile(tree: Tree, manager: str, lockfile: str | None) -> tuple[str, str]:
    if lockfile is None:
        return DEFAULT[manager], f"no lockfile: corepack's default {manager}"
    label = label_in(tree.copy_root, lockfile)
    head = read_text(tree.copy_dir / lockfile, label=label, max_bytes=MAX_FILE_BYTES)[:4096]
    if manager == "yarn":
        if "# yarn lockfile v1" in head:
            return YARN_CLASSIC, f"{label} (yarn lockfile v1)"
        found = re.search(r"^__metadata:\s*\n\s+version:\s*(\d+)", head, re.MULTILINE)
        number = int(found.group(1)) if found else max(YARN_BERRY)
        version = YARN_BERRY.get(number, YARN_BERRY[max(YARN_BERRY)])
        return version, f"{label} (yarn berry lockfile version {number})"
    found = re.search(r"^lockfileVersion:\s*['\"]?(\d+(?:\.\d+)?)", head, re.MULTILINE)
    text = found.group(1) if found else "9"
    version = PNPM.get(text) or PNPM.get(text.split(".")[0]) or DEFAULT["pnpm"]
    return version, f"{label} (lockfileVersion {text})"


def install_prefix(manager: str, provided: Provided) -> str:
    """Shell run before the install: corepack's shim for `manager` in $DEPS/corepack/bin (first on the
    plan's PATH) and the version itself, downloaded once into the layer."""
    spec = shlex.quote(provided.spec)
    # Some registries and mirrors (this one behind a TLS proxy among them) serve package metadata without
    # npm's signatures, which corepack checks: it then fails with "No compatible signature found". Only
    # then, and only when the user set no COREPACK_INTEGRITY_KEYS of their own, it is asked again without
    # that check; the download is still over TLS, and a version with a +sha hash is still checked by it.
    # corepack's stack trace is left out of the log: its first line says why.
    install = f"corepack install -g {spec}"
    retry = (f'{{ [ -z "${{COREPACK_INTEGRITY_KEYS+set}}" ] && echo "corepack: no npm signatures in the registry\'s '
             f'metadata; installing {manager} without that check (COREPACK_INTEGRITY_KEYS=0)" '
             f"&& COREPACK_INTEGRITY_KEYS=0 {install}; }}")
    return (f'mkdir -p "{BIN}" && corepack enable --install-directory "{BIN}" {manager} && '
            f'{{ out=$({install} 2>&1); code=$?; echo "$out" | grep -v "^ *at "; '
            f'[ $code = 0 ] || {{ echo "$out" | grep -q signature && {retry}; }}; }} '
            f'&& echo "==> {manager} $({manager} --version) provided by corepack $(corepack --version) '
            f'({provided.why}): {manager} was not found on the PATH" && ')


def corepack_env() -> dict[str, str]:
    """For install, build and start: corepack's home in the layer; never a prompt, never an edit to
    package.json (corepack pins packageManager into it otherwise); yarn berry from the npm registry, since
    repo.yarnpkg.com may be unreachable where the npm registry is not."""
    return {"COREPACK_HOME": HOME, "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0", "COREPACK_ENABLE_AUTO_PIN": "0",
            "COREPACK_NPM_REGISTRY": "https://registry.npmjs.org"}
