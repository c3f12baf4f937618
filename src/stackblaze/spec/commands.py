"""How a start command becomes an argv, so that the stop signal reaches the worker and not a shell.

The one rule for both engines: the local engine spawns this argv, and an image's exec-form CMD is it.
"""

from __future__ import annotations

import re
import shlex

# Characters that need a shell; without them a start command is split with shlex and exec'd directly.
# Quotes are not among them: shlex splits them as sh does.
SHELL_CHARS = set("|&;<>()$`\\*?[]{}#~\n")
COMPOUND_CHARS = set("|&;()`\n")  # `exec` in front would only replace the first of several commands
ASSIGNMENT = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*=")


def start_argv(start: str) -> list[str]:
    """A simple command is exec'd directly; one with shell syntax runs as `sh -c "exec ..."` (dash, the
    usual /bin/sh, stays the parent of even a single command without it); several commands get plain
    `sh -c`, and a build-time warning says to add `exec` (build/signals.py)."""
    if SHELL_CHARS.isdisjoint(start) and not ASSIGNMENT.match(start):
        try:
            argv = shlex.split(start)
        except ValueError:  # an unbalanced quote: let the shell report it at start
            argv = []
        if argv:
            return argv
    if COMPOUND_CHARS.isdisjoint(start) and not ASSIGNMENT.match(start):
        return ["/bin/sh", "-c", f"exec {start.strip()}"]
    return ["/bin/sh", "-c", start]
