"""A Debian bookworm Python base image for tests that build Python images (no registry is reachable to pull
python:3.11-slim from): `debootstrap --variant=minbase --include=python3-minimal,python3-venv`, its apt caches,
docs and locales removed (≈130 MB instead of 275 MB: buildah's vfs storage copies the whole tree at each step),
tarred once into ${STACKBLAZE_K8S_CACHE:-~/.cache/stackblaze}/python-base-bookworm.tar and kept between runs (as
the control plane is); each test's buildah storage then imports the tarball as BASE.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.tools import need

BASE = "localhost/stackblaze-test-python:latest"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SLIMMED = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
           "usr/share/info")


def cache_root() -> Path:
    return Path(os.environ.get("STACKBLAZE_K8S_CACHE") or Path.home() / ".cache" / "stackblaze")


def mirror() -> str:
    """The Debian mirror this machine's apt uses (the only package source reachable), else deb.debian.org."""
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        try:
            text = source.read_text()
        except OSError:
            continue
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm\b", text, re.M)
        if found:
            return found.group(1)
    return DEFAULT_MIRROR


def python_base_tarball() -> Path:
    """The cached rootfs tarball, made with debootstrap (≈40 s, root) the first time; a lock keeps two pytest
    workers from making it at once."""
    tarball = cache_root() / f"python-base-{SUITE}.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with open(tarball.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.is_file():
            return tarball
        debootstrap = need("debootstrap", "apt-get install -y debootstrap")
        with tempfile.TemporaryDirectory(dir=tarball.parent, prefix="python-base-") as work:
            rootfs = Path(work, "rootfs")
            done = subprocess.run([debootstrap, "--variant=minbase", "--include=python3-minimal,python3-venv",
                                   SUITE, str(rootfs), mirror()], capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"debootstrap failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            for path in SLIMMED:
                shutil.rmtree(rootfs / path, ignore_errors=True)
            partial = Path(work, "rootfs.tar")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300)
            partial.replace(tarball)
    return tarball
