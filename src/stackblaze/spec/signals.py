"""Stop signals as people write them in a spec: "SIGTERM", "TERM", "sigterm" or 15."""

from __future__ import annotations

import signal

from stackblaze.spec.messages import fail, show

_UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})
_EXAMPLE = "e.g. stop_signal: SIGTERM, SIGINT or SIGQUIT"


def parse_signal(value: object, *, where: str) -> str:
    """Return the canonical signal name (e.g. "SIGTERM"); `where` prefixes the error raised if invalid."""
    found = _lookup(value)
    if found is None:
        raise fail(where, f"{show(value)} is not a signal ({_EXAMPLE})")
    if found in _UNCATCHABLE:
        raise fail(where, f"{show(value)} cannot be caught, so the worker could not shut down cleanly ({_EXAMPLE})")
    return found.name


def _lookup(value: object) -> signal.Signals | None:
    """Return the signal value names, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().upper()
        if not (text.isascii() and text.isdigit() and len(text) < 4):
            # The members also hold aliases (SIGIOT, SIGCLD), which .name turns canonical.
            return signal.Signals.__members__.get(_full_name(text))
        value = int(text)
    if isinstance(value, int):
        try:
            return signal.Signals(value)
        except ValueError:
            return None
    return None


def _full_name(text: str) -> str:
    """Return text as a signal name: "term" -> "SIGTERM"."""
    text = text.strip().upper()
    return text if text.startswith("SIG") else "SIG" + text
