"""Read a Procfile (`name: command` per line) the way Heroku and honcho do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from stackblaze.spec.document import read_text
from stackblaze.spec.messages import fail, show

MAX_BYTES = 64 * 1024
_LINE = re.compile(r"([A-Za-z0-9_-]+):\s*(\S.*)")
_EXAMPLE = "(e.g. worker: python worker.py)"


@dataclass(frozen=True)
class ProcessType:
    """One `name: command` line of a Procfile."""

    name: str
    command: str
    line: int


def read_procfile(path: Path, *, label: str) -> tuple[ProcessType, ...]:
    """Return the process types of the Procfile at path, in file order; errors start with `label:`."""
    text = read_text(path, label=label, max_bytes=MAX_BYTES)
    found: dict[str, ProcessType] = {}
    # Split on "\n" only, so line numbers match what an editor shows.
    for number, text_line in enumerate(text.split("\n"), start=1):
        stripped = text_line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        if match is None or "\0" in stripped:
            raise fail(f"{label}:{number}", f"{show(stripped)} is not 'name: command' {_EXAMPLE}")
        name, command = match.group(1), match.group(2).strip()
        if name in found:
            first = found[name].line
            raise fail(
                f"{label}:{number}",
                f"process type {show(name)} is defined twice (first on line {first}; keep one)",
            )
        found[name] = ProcessType(name=name, command=command, line=number)
    return tuple(found.values())
