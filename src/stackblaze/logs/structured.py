"""JSON log lines: level, message, time and the other fields; and the filters `stackblaze logs` applies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stackblaze.errors import UserError
from stackblaze.logs.record import LogRecord

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
ALIASES = {
    "trace": "trace", "debug": "debug", "info": "info", "information": "info", "notice": "info",
    "warn": "warn", "warning": "warn", "err": "error", "error": "error", "fatal": "fatal",
    "critical": "fatal", "crit": "fatal", "alert": "fatal", "emerg": "fatal", "panic": "fatal",
}
LEVEL_KEYS = ("level", "severity", "levelname", "lvl", "log.level")
MESSAGE_KEYS = ("msg", "message", "event")
TIME_KEYS = ("time", "timestamp", "ts", "@timestamp", "asctime")


def normalize_level(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):  # pino / bunyan numbers: 10 trace ... 60 fatal
        index = int(value) // 10 - 1
        return LEVELS[min(max(index, 0), len(LEVELS) - 1)] if value >= 10 else None
    if isinstance(value, str):
        return ALIASES.get(value.strip().lower())
    return None


@dataclass(frozen=True)
class Structured:
    level: str | None
    message: str | None
    time: str | None
    fields: dict[str, Any]


def parse_line(line: str) -> Structured | None:
    """The line as a structured record when it is a JSON object; None for a plain line."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    level = message = when = None
    fields = dict(data)
    for key in LEVEL_KEYS:
        if key in fields:
            level = normalize_level(fields.pop(key))
            break
    for key in MESSAGE_KEYS:
        if key in fields and isinstance(fields[key], str):
            message = fields.pop(key)
            break
    for key in TIME_KEYS:
        if key in fields:
            when = str(fields.pop(key))
            break
    return Structured(level, message, when, fields)


def record_dict(record: LogRecord) -> dict[str, Any]:
    """The log record as the API sends it: for a JSON line also level, message, fields."""
    payload = record.to_dict()
    parsed = parse_line(record.line)
    if parsed is not None:
        payload.update(level=parsed.level, message=parsed.message, fields=parsed.fields)
        if parsed.time is not None:
            payload["time"] = parsed.time
    return payload


@dataclass(frozen=True)
class LogFilter:
    level: str | None = None  # that level and above
    grep: str | None = None
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(cls, *, level: str | None, grep: str | None, fields: list[str]) -> LogFilter:
        wanted = None
        if level is not None:
            wanted = normalize_level(level)
            if wanted is None:
                raise UserError(f"--level: {level!r} is not a level (use one of {', '.join(LEVELS)})")
        pairs = []
        for item in fields:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UserError(f"--field: {item!r} is not key=value (e.g. --field queue=emails)")
            pairs.append((key, value))
        return cls(wanted, grep or None, tuple(pairs))

    @property
    def active(self) -> bool:
        return bool(self.level or self.grep or self.fields)

    def matches(self, payload: dict[str, Any]) -> bool:
        if self.grep is not None and self.grep not in payload["line"]:
            return False
        if self.level is not None:
            level = payload.get("level")
            if level is None or LEVELS.index(level) < LEVELS.index(self.level):
                return False
        fields = payload.get("fields") or {}
        return all(key in fields and _text(fields[key]) == value for key, value in self.fields)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)
