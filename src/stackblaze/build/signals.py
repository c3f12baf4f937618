"""Start commands that would swallow the stop signal: each gets a one-line warning saying why and what to write.

The stop signal goes to the replica's main process only. When that process is npm, yarn or a shell that
waits for its child, the worker never sees SIGTERM: it is SIGKILLed at the end of the grace period, in the
middle of whatever it was doing.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

# A start command with shell syntax runs under `/bin/sh -c`. A single command can have `exec` put in front
# of it by the engine (the image engine does); several commands (`cd app && python worker.py`) cannot, and
# Debian's dash stays the parent of the last one: only an `exec` written by the user hands it over.
COMPOUND_CHARS = set("|&;()\n")
_QUOTED_OR_SUBSTITUTED = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"|\$\([^()]*\)|`[^`]*`|[0-9]*[<>]&[0-9-]*")
SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh"}
WRAPPERS = {"npm", "npx", "yarn", "pnpm"}
MAX_SCRIPT_BYTES = 256 * 1024
_EXEC = re.compile(r"(?:^|[;&|({]|\bthen|\bdo|\belse)\s*exec\s", re.MULTILINE)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def start_warnings(start: str, root: Path) -> list[str]:
    """Why `start`, run at `root`, would not pass SIGTERM on to the worker, and what to write instead."""
    try:
        argv = shlex.split(start, comments=False)
    except ValueError:  # unbalanced quotes: the shell will complain at start, not us
        return []
    argv = _without_env_prefix(argv)
    if not argv:
        return []
    program = Path(argv[0]).name
    if program in WRAPPERS and len(argv) > 1:
        return [_wrapper_warning(argv, root)]
    if program in SHELLS and len(argv) > 2 and argv[1].startswith("-") and "c" in argv[1]:
        if _has_exec(argv[2]):
            return []
        single = COMPOUND_CHARS.isdisjoint(_QUOTED_OR_SUBSTITUTED.sub("", argv[2]))
        fixed = f"exec {argv[2].strip()}" if single else "... && exec your-worker"
        return [f"start: {program} -c stays the parent of the command it runs, so SIGTERM stops the shell and not "
                f"your worker (put exec before the command that runs the worker: {program} -c {shlex.quote(fixed)})"]
    script = _shell_script(argv, root)
    if script is not None and not _has_exec(_read(root / script)):
        return [f"start: {script} runs your worker as a child of the shell, which does not pass SIGTERM on "
                f"(end the script with exec, e.g. exec python worker.py \"$@\")"]
    if not COMPOUND_CHARS.isdisjoint(_QUOTED_OR_SUBSTITUTED.sub("", start)) and not _has_exec(start):
        return ["start: is several shell commands, so /bin/sh -c stays the worker's parent and takes SIGTERM "
                "itself (put exec before the command that runs the worker, e.g. cd app && exec python worker.py)"]
    return []


def _wrapper_warning(argv: list[str], root: Path) -> str:
    tool = Path(argv[0]).name
    runs = argv[1] in ("run", "run-script") and len(argv) > 2
    shown = " ".join(argv[:3] if runs else argv[:2])
    if tool == "npx":  # the package's binary is on PATH already (node_modules/.bin)
        shown = shlex.join(argv)
        command: str | None = shlex.join(arg for arg in argv[1:] if arg not in ("-y", "--yes"))
    else:
        command = _package_script(root, argv[2] if runs else argv[1])
    instead = f"start: {command}" if command else "the script's command itself, e.g. start: node worker.js"
    return (f"start: {shown} puts {tool} and a shell between the stop signal and your worker, which then gets no "
            f"SIGTERM and is killed at the end of its grace period (write {instead})")


def _package_script(root: Path, name: str) -> str | None:
    try:
        scripts = json.loads((root / "package.json").read_text(encoding="utf-8")).get("scripts")
    except (OSError, ValueError, AttributeError):
        return None
    command = scripts.get(name) if isinstance(scripts, dict) else None
    return command.strip() if isinstance(command, str) and command.strip() else None


def _without_env_prefix(argv: list[str]) -> list[str]:
    """`env A=1 B=2 cmd` and `A=1 cmd` run cmd (env execs it; the shell case is caught by SHELL_CHARS)."""
    if argv and argv[0] == "env":
        argv = argv[1:]
    while argv and _ASSIGNMENT.fullmatch(argv[0]):
        argv = argv[1:]
    return argv


def _shell_script(argv: list[str], root: Path) -> str | None:
    """The script a start command runs when it is a shell script at root (`./start.sh`, `bash bin/run`)."""
    if Path(argv[0]).name in SHELLS:
        candidate = next((arg for arg in argv[1:] if not arg.startswith("-")), None)
        if candidate is None:
            return None
        return candidate if (root / candidate).is_file() else None
    path = root / argv[0]
    if "/" not in argv[0] and not path.is_file():
        return None  # a program on PATH, not a file of the project
    if not path.is_file():
        return None
    head = _read(path)[:128]
    shebang = head.splitlines()[0] if head.startswith("#!") else ""
    interpreter = shebang[2:].strip().split()
    if interpreter and Path(interpreter[0]).name == "env" and len(interpreter) > 1:
        interpreter = interpreter[1:]
    is_shell = bool(interpreter) and Path(interpreter[0]).name in SHELLS
    return argv[0] if is_shell or (not shebang and argv[0].endswith(".sh")) else None


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_SCRIPT_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""


def _has_exec(script: str) -> bool:
    """Whether a shell script hands its process over to a command with `exec` somewhere (not in a comment)."""
    code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
    return bool(_EXEC.search(code))
