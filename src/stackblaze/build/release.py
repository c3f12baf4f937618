"""What a release is made of: the source tree as the builder copies it, and its digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from stackblaze.spec.naming import SPEC_NAMES

IGNORED = {".git", "__pycache__", ".stackblaze", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
# stackblaze reads these, the app does not: what they say reaches the replicas as the service's config (its
# own digest), so a change to them (a service added, an env value) must not make a new release of every
# service whose code sits beside them, which would roll its replicas for nothing.
SPEC_FILES = frozenset(SPEC_NAMES)


def digest_tree(root: Path, *, skip: frozenset[str] = frozenset()) -> str:
    """A digest of the tree's paths, modes and contents (what a snapshot would copy), leaving out the
    files whose paths relative to root are in `skip`."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED)
        for name in sorted(files):
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            if relative in skip:
                continue
            digest.update(relative.encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
                continue
            digest.update(oct(path.stat().st_mode & 0o777).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()
