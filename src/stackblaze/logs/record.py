"""LogRecord and the CRI line format the runner writes: `<RFC3339 time> <stream> <F|P> <line>`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class LogRecord:
    at: str  # RFC 3339, UTC, microseconds: sorts as text
    service: str
    replica: int
    stream: str
    line: str
    partial: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "service": self.service, "replica": self.replica, "stream": self.stream,
                "line": self.line, "partial": self.partial}


def parse_cri(raw: bytes, *, service: str, replica: int) -> LogRecord | None:
    """One line of a log file (without its newline); None for a line that is not ours."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    line = parts[3] if len(parts) == 4 else b""
    return LogRecord(
        at=parts[0].decode("ascii", "replace"), service=service, replica=replica,
        stream=parts[1].decode("ascii", "replace"), line=line.decode("utf-8", "replace"),
        partial=parts[2] == b"P",
    )


def format_time(when: float) -> str:
    """A Unix time as log records write it (RFC 3339, UTC, microseconds): comparable with `at` as text."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
