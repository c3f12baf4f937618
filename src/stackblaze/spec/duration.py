"""Durations as people write them in a spec: 30, 1.5, "30s", "1m30s", "500ms", "2h"."""

from __future__ import annotations

import math
import re

from stackblaze.spec.messages import fail, show

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ORDER = list(_UNITS)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)\s*")
_FIELD = re.compile(r"(?:^|[ .])([A-Za-z_][A-Za-z0-9_-]*)$")


def parse_duration(value: object, *, where: str) -> float:
    """Return value in seconds; `where` is the `file:line: field` prefix of the error raised if invalid."""
    field = _FIELD.search(where)
    example = f"e.g. {field.group(1)}: 30s" if field else "e.g. 30s"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise fail(where, f"{show(value)} is not a duration ({example}, 1m30s or 500ms)")
    seconds = _seconds(value)
    if seconds is None:
        raise fail(where, f"{show(value)} is not a duration ({example}, 1m30s or 500ms)")
    if seconds < 0:
        raise fail(where, f"{show(value)} must not be negative ({example})")
    if not math.isfinite(seconds):
        raise fail(where, f"{show(value)} is not a finite duration ({example})")
    return seconds


def _seconds(value: int | float | str) -> float | None:
    """Return the number of seconds value stands for, or None when it is not a duration."""
    if not isinstance(value, str):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    text = value.strip().lower()
    if _NUMBER.fullmatch(text):
        return float(text)
    total, position, last_unit = 0.0, 0, -1
    for part in _PART.finditer(text):
        unit = _ORDER.index(part.group(2))
        # Units must come biggest first and once each, so "30s1m" or "1m1m" is flagged as a typo.
        if part.start() != position or unit <= last_unit:
            return None
        total += float(part.group(1)) * _UNITS[part.group(2)]
        position, last_unit = part.end(), unit
    if position == 0 or position != len(text):
        return None
    return total
