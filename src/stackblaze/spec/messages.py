"""How spec errors read: bounded value reprs, did-you-mean hints and path segments."""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Iterable

from stackblaze.errors import SpecError

MAX_SHOWN = 40

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

# reprlib keeps the work bounded even for alias-bomb or self-referencing values.
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxdict = 4
_REPR.maxlist = 4
_REPR.maxtuple = 4
_REPR.maxset = 4
_REPR.maxstring = MAX_SHOWN
_REPR.maxlong = MAX_SHOWN
_REPR.maxother = MAX_SHOWN


def show(value: object) -> str:
    """Return repr(value) cut to about MAX_SHOWN characters, always on one line."""
    try:
        text = repr(value) if isinstance(value, str) else _REPR.repr(value)
    except Exception:  # showing must never be the thing that fails
        text = f"<{type(value).__name__}>"
        if isinstance(value, int):  # too long for str(); only hex or octal YAML makes one
            text = f"<int of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if len(text) > MAX_SHOWN:
        text = text[: MAX_SHOWN - 3] + "..."
    return text


def did_you_mean(word: object, choices: Iterable[str]) -> str | None:
    """Return the choice closest to word, if one is close enough to be a likely typo."""
    if not isinstance(word, str):
        return None
    by_lower = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def segment(key: object) -> str:
    """Render one mapping key as a field-path segment: `.replicas`, or `['odd key']` when not plain."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return "." + key
    return f"[{show(key)}]"


def join(path: str, key: object) -> str:
    """Append a mapping key to a field path."""
    tail = segment(key)
    return tail[1:] if not path and tail.startswith(".") else path + tail


def one_line(text: str) -> str:
    """Escape every character str.splitlines() would break on, so a message stays one line."""
    return _LINE_BREAK.sub(lambda match: repr(match.group())[1:-1], text)


def fail(where: str, problem: str) -> SpecError:
    """Build the one-line error `<where>: <problem>`; callers raise it."""
    return SpecError(one_line(f"{where}: {problem}"))
