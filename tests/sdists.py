"""A source distribution made on the spot, for tests of installers failing to build a pinned package."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def make_sdist(directory: Path, files: dict[str, str], *, name: str = "broken", version: str = "1.0") -> Path:
    """`<name>-<version>.tar.gz` in `directory`, holding `files` and a PKG-INFO; pip builds it from source."""
    directory.mkdir(parents=True, exist_ok=True)
    sdist = directory / f"{name}-{version}.tar.gz"
    files = {**files, "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    with tarfile.open(sdist, "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sdist
