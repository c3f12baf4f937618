"""Releases before the build pipeline exists: a numbered, immutable snapshot of a service's source."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

IGNORED = {".git", "__pycache__", ".stackblaze", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Release:
    number: int
    path: Path
    digest: str
    new: bool


def digest_tree(root: Path) -> str:
    """A digest of the tree's paths, modes and contents (what a snapshot would copy)."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED)
        for name in sorted(files):
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
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


def make_release(
    source: Path, releases_dir: Path, *, previous: tuple[int, str, str] | None, keep: int = 5
) -> Release:
    """Snapshot `source` as the next release, or reuse the previous one when nothing changed."""
    digest = digest_tree(source)
    if previous is not None and previous[2] == digest and Path(previous[1]).is_dir():
        return Release(previous[0], Path(previous[1]), digest, new=False)
    number = 1 if previous is None else previous[0] + 1
    target = releases_dir / str(number)
    staging = releases_dir / f".{number}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, symlinks=True, ignore=shutil.ignore_patterns(*IGNORED))
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)  # a release appears whole or not at all
    for old in releases_dir.iterdir():
        if old.name.isdigit() and int(old.name) <= number - keep:
            shutil.rmtree(old, ignore_errors=True)
    return Release(number, target, digest, new=True)
