"""Start commands that send the worker's logs to a file: each gets a one-line warning saying why and what to write.

stackblaze keeps what a replica writes to stdout and stderr: `logs`, drains and the last lines of an exit
all read that. A worker told to log to a file (`--logfile`, `logfile=`, a `> file` redirection) writes
where none of them look, into a file that is never rotated and goes with the release.
"""

from __future__ import annotations

import re
import shlex

from stackblaze.build.signals import SHELLS

# Where a log "file" is the process's own output after all (gunicorn's `--log-file -` is stderr).
STREAMS = {"-", "/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2", "/proc/self/fd/1", "/proc/self/fd/2"}
DISCARDED = "/dev/null"
_OPTION = re.compile(r"--(?:[a-z]+[-_])*log[-_]?file")  # --logfile, --log-file, --error-logfile...
_SETTING = re.compile(r"(?:^|[^\w-])(log_?file)\s*=\s*['\"]?([^\s'\",)]*)")  # logfile=..., log_file="..."
_REDIRECTS = {">", ">>", ">|", "&>", "&>>", ">&"}
MAX_DEPTH = 2  # `sh -c 'bash -c "..."'` is looked into; deeper nesting is not worth the words


def logfile_warnings(start: str) -> list[str]:
    """Why `start` would keep the worker's logs from stackblaze, and what to write instead (one per place)."""
    return _warnings(start, depth=0)


def _warnings(command: str, *, depth: int) -> list[str]:
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the shell will complain at start, not us
        return []
    found: list[str] = []
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if token in _REDIRECTS:
            if token == ">&" and (following.isdigit() or following == "-"):
                continue  # 2>&1, >&2, >&-: a descriptor, not a file
            found += _redirect_warning(tokens[index - 1] if index else "", token, following)
        elif _OPTION.fullmatch(token.split("=", 1)[0]):
            value = token.split("=", 1)[1] if "=" in token else following
            found += _option_warning(token.split("=", 1)[0], value)
        else:
            for match in _SETTING.finditer(token):
                found += _setting_warning(match.group(1), match.group(2))
        if (depth < MAX_DEPTH and token.rsplit("/", 1)[-1] in SHELLS and following.startswith("-")
                and "c" in following and index + 2 < len(tokens)):
            found += _warnings(tokens[index + 2], depth=depth + 1)
    return list(dict.fromkeys(found))


def _redirect_warning(before: str, operator: str, target: str) -> list[str]:
    if not target or target in STREAMS:
        return []
    shown = f"{before}{operator} {target}" if before.isdigit() else f"{operator} {target}"
    what = "the worker's errors" if before == "2" else "the worker's output"
    done = f"discards {what}, so" if target == DISCARDED else f"sends {what} to a file, where"
    return [f"start: {shown} {done} `stackblaze logs`, drains and exit reports never see it (remove "
            f"{shlex.quote(shown)}: stackblaze keeps and rotates stdout and stderr)"]


def _option_warning(option: str, value: str) -> list[str]:
    if value in STREAMS or value.startswith("-"):
        return []  # `--log-file -`, or a flag with no value
    done = "discards the worker's logs, so" if value == DISCARDED else "writes the worker's logs to a file, where"
    return [f"start: {option}={value} {done} `stackblaze logs`, drains and exit reports never see them (remove "
            f"{option}: the worker then logs to stderr, which stackblaze keeps and rotates)"]


def _setting_warning(name: str, value: str) -> list[str]:
    if not value or value in STREAMS or value.lower() in ("none", "null"):
        return []
    done = "discards the worker's logs, so" if value == DISCARDED else "writes the worker's logs to a file, where"
    return [f"start: {name}={value} {done} `stackblaze logs`, drains and exit reports never see them (leave "
            f"{name} unset: the worker then logs to stderr, which stackblaze keeps and rotates)"]
