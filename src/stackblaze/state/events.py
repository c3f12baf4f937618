"""What one event may carry: its message and details capped, so that a crash loop printing huge lines
cannot grow the database (the store also prunes events per project by count, age and bytes)."""

from __future__ import annotations

import json
from typing import Any

from stackblaze.settings import EventLimits

MESSAGE_BYTES = 1024
SHORT_TEXT = 256  # a string field of details, when the whole is still too big


def cut_text(text: str, limit: int) -> str:
    """`text` within `limit` UTF-8 bytes, its end replaced by a marker saying how much was cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    keep = raw[: max(0, limit - 32)].decode(errors="ignore")
    return f"{keep}… [{len(raw) - len(keep.encode())} bytes cut]"


def cap_lines(lines: list[Any], limits: EventLimits, budget: int | None = None) -> list[str]:
    """The last `limits.lines` lines, each within `limits.line_bytes`, and together within `budget` bytes
    of JSON; a first line says how many were left out."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        text = cut_text(str(line), limits.line_bytes)
        size = len(json.dumps(text)) + 2
        if len(kept) == limits.lines or (budget is not None and used + size > budget - 48):
            break
        kept.append(text)
        used += size
    kept.reverse()
    if len(kept) < len(lines):
        cut = len(lines) - len(kept) + (1 if kept else 0)
        kept[:1] = [f"… [{cut} earlier lines cut]"]
    return kept


def cap_message(message: str) -> str:
    return cut_text(message, MESSAGE_BYTES)


def cap_details(details: dict[str, Any], limits: EventLimits) -> tuple[dict[str, Any], str]:
    """`details` (and its JSON text) within `limits.details_bytes`: `last_lines` is capped first (to what
    the rest leaves room for), then long strings are cut, and what still does not fit is replaced by its
    size. A payload that lost more than its lines' ends says so (`"truncated": true`)."""
    payload = dict(details)
    lines = payload.get("last_lines")
    if isinstance(lines, list):
        rest = len(json.dumps({**payload, "last_lines": []}))
        payload["last_lines"] = cap_lines(lines, limits, max(0, limits.details_bytes - rest))
    text = json.dumps(payload)
    if len(text) <= limits.details_bytes:
        return payload, text
    payload = {key: _shortened(value) for key, value in payload.items()}
    payload["truncated"] = True
    text = json.dumps(payload)
    if len(text) > limits.details_bytes:
        payload = {key: value for key, value in payload.items()
                   if isinstance(value, (int, float, bool)) or value is None}
        payload.update({"truncated": True, "bytes": len(text)})
        text = json.dumps(payload)
    return payload, text


def _shortened(value: Any) -> Any:
    if isinstance(value, str):
        return cut_text(value, SHORT_TEXT)
    if isinstance(value, list):
        return [_shortened(item) for item in value[-8:]]
    if isinstance(value, dict):
        return {str(key)[:SHORT_TEXT]: _shortened(item) for key, item in list(value.items())[:32]}
    return value
