"""The `logs:` setting of a service: how much of each replica's log is kept on disk (size × files)."""

from __future__ import annotations

import re

from stackblaze.spec.messages import fail, show

DEFAULT_MAX_BYTES = 10 << 20  # the kubelet's containerLogMaxSize
DEFAULT_MAX_FILES = 5  # and containerLogMaxFiles
MIN_BYTES = 64 << 10  # a few long lines must fit one file
MAX_BYTES = 10 << 30
UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$", re.IGNORECASE)


def parse_size(value: object, *, where: str) -> int:
    """`10Mi`, `10MiB`, `512Ki`, `1G`, or a number of bytes -> bytes, between 64 KiB and 10 GiB."""
    size: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := SIZE.match(value)):
        size = float(match.group(1)) * UNITS[(match.group(2) or "").lower()]
    if size is None:
        raise fail(where, f"{show(value)} is not a size (e.g. max_size: 10Mi)")
    if not MIN_BYTES <= size <= MAX_BYTES:
        raise fail(where, f"{show(value)} is out of range (use 64Ki to 10Gi, e.g. max_size: 10Mi)")
    return int(size)


def parse_files(value: object, *, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"{show(value)} is not a whole number (e.g. max_files: 5)")
    if not 1 <= value <= 100:
        raise fail(where, f"{show(value)} is out of range (use 1 to 100, e.g. max_files: 5)")
    return value
