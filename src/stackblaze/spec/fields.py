"""Checks for single spec values: each returns the clean value or raises a one-line SpecError."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from stackblaze.spec.duration import parse_duration
from stackblaze.spec.messages import did_you_mean, fail, show
from stackblaze.spec.model import ServiceType, Strategy

MAX_REPLICAS = 1000
MAX_GRACE_SECONDS = 600.0

# Stricter than ^[a-z][a-z0-9-]{0,39}$ at the end: a trailing "-" is not a valid Kubernetes name.
_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The same grammar anchored, for the API's parameters and the OpenAPI document.
NAME_PATTERN = f"^{_NAME.pattern}$"

# What execve(2) lets a process receive: one "KEY=value" string (its NUL included) may be at most
# MAX_ARG_STRLEN, 32 pages = 128 KiB; all of argv and envp (strings and their 8-byte pointers) at most
# ARG_MAX, a quarter of the stack limit (2 MiB with the usual 8 MiB). A replica's environment is held to
# half of that, so that its command line and a smaller stack limit still fit.
ENV_STRING_MAX = 128 * 1024
ENV_TOTAL_MAX = 1024 * 1024
# Room kept in the spec's env for the platform's own variables (PATH, HOME, the runtime's, STACKBLAZE_*).
PLATFORM_ENV_RESERVE = 64 * 1024
_NOT_YET = {"web"}
_TYPES: dict[str, ServiceType] = {"worker": "worker", "cron": "cron", "redis": "redis", "postgres": "postgres"}
_STRATEGIES: tuple[Strategy, ...] = ("rolling", "recreate")


def slugify(text: str) -> str | None:
    """Turn text into a valid name ("My App_2" -> "my-app-2"), or None when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text)
    slug = re.sub(r"^[^a-z]+", "", slug)[:40].strip("-")
    return slug if _NAME.fullmatch(slug) else None


def check_name(value: object, *, where: str, key: str) -> str:
    """Return value if it is a valid project or service name."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    example = (slugify(value) if isinstance(value, str) else None) or "worker"
    rule = "use 1-40 lowercase letters, digits and '-', starting with a letter"
    raise fail(where, f"{show(value)} is not a valid name: {rule} (e.g. {key}: {example})")


def check_type(value: object, *, where: str) -> ServiceType:
    """Return the service type: a worker, or a backing service (redis, postgres)."""
    if isinstance(value, str) and value in _TYPES:
        return _TYPES[value]
    if isinstance(value, str) and value in _NOT_YET:
        raise fail(where, f"{show(value)} is not supported yet: workers, cron, redis and postgres run for now "
                          "(e.g. type: worker)")
    guess = did_you_mean(value, _TYPES) if isinstance(value, str) else None
    raise fail(where, f"{show(value)} is not a service type (" + (f"did you mean {guess}?" if guess else
                      "one of worker, cron, redis, postgres; e.g. type: worker") + ")")


def check_replicas(value: object, *, where: str) -> int:
    """Return value if it is a whole number of replicas in range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"{show(value)} is not a whole number (e.g. replicas: 4)")
    if value < 0:
        raise fail(where, f"{show(value)} must be 0 or more (e.g. replicas: 2)")
    if value > MAX_REPLICAS:
        raise fail(where, f"{show(value)} is more than {MAX_REPLICAS} (e.g. replicas: 10)")
    return value


def check_grace(value: object, *, where: str) -> float:
    """Return the shutdown grace in seconds: more than 0, at most 600."""
    seconds = parse_duration(value, where=where)
    if seconds <= 0:
        raise fail(where, f"{show(value)} must be more than 0 seconds (e.g. shutdown_grace: 30s)")
    if seconds > MAX_GRACE_SECONDS:
        raise fail(where, f"{show(value)} is longer than the 600 seconds allowed (e.g. shutdown_grace: 10m)")
    return seconds


def check_strategy(value: object, *, where: str) -> Strategy:
    """Return the deploy strategy: rolling or recreate."""
    for strategy in _STRATEGIES:
        if value == strategy:
            return strategy
    guess = did_you_mean(value, _STRATEGIES)
    hint = f"did you mean {guess}? " if guess else ""
    raise fail(where, f"{show(value)} is not a strategy ({hint}e.g. strategy: rolling or recreate)")


def check_command(value: object, *, where: str, key: str) -> str:
    """Return a non-empty shell command, stripped of surrounding whitespace."""
    example = {"start": "e.g. start: python worker.py", "release": "e.g. release: python manage.py migrate"}.get(
        key, f"e.g. {key}: pip install -r requirements.txt")
    if not isinstance(value, str):
        raise fail(where, f"{show(value)} is not a command ({example})")
    if "\0" in value:
        raise fail(where, f"{show(value)} contains a NUL character (remove it)")
    if not value.strip():
        raise fail(where, f"{show(value)} is empty ({example})")
    return value.strip()


def check_root(value: object, *, where: str, source: Path) -> str:
    """Return value as a normalized relative path to an existing directory inside source."""
    example = "(e.g. root: services/email)"
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise fail(where, f"{show(value)} is not a path {example}")
    path = PurePosixPath(value)
    if path.is_absolute() or value.startswith("~"):
        raise fail(where, f"{show(value)} is absolute, not a path inside the project directory {example}")
    if ".." in path.parts:
        raise fail(where, f"{show(value)} leaves the project directory {example}")
    try:
        target = (source / path).resolve()
        inside = target.is_relative_to(source.resolve())
        is_dir = target.is_dir()
    except (OSError, RuntimeError, ValueError):  # symlink loops, names too long
        raise fail(where, f"{show(value)} is not a usable path {example}") from None
    if not inside:
        raise fail(where, f"{show(value)} leaves the project directory through a symlink {example}")
    if not is_dir:
        raise fail(where, f"{show(value)} is not a directory in {source} {example}")
    return str(path)


def check_env_key(key: object, *, where: str, assign: str = ": ") -> str:
    """Return key if it is a valid environment variable name (so no "=", no NUL, not empty); `assign` is
    how the example in the error sets it (": " in YAML, "=" on the command line)."""
    if isinstance(key, str) and _ENV_KEY.fullmatch(key):
        return key
    fixed = re.sub(r"[^A-Za-z0-9_]", "_", key[:40]) if isinstance(key, str) and key else "MY_VAR"
    fixed = "_" + fixed if fixed[0].isdigit() else fixed
    rule = "use letters, digits and _, not starting with a digit"
    raise fail(where, f"{show(key)} is not a variable name: {rule} (e.g. {fixed[:40]}{assign}value)")


def check_env_value(value: object, *, where: str, key: str) -> str:
    """Return value as the string a process will see: true/false for booleans, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int past Python's digit limit (only hex/octal YAML can make one)
            raise fail(where, f'{show(value)} is too big (quote it, e.g. {key}: "12345")') from None
    if isinstance(value, str):
        if "\0" in value:
            raise fail(where, f"{show(value)} contains a NUL character (remove it)")
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in JSON) has no bytes a process could get
            raise fail(where, f"{show(value)} is not valid text (a lone surrogate; write the character itself)") \
                from None
        size = env_string_size(key, value)
        if size > ENV_STRING_MAX:
            raise fail(where, f"{show(value)} is too long: {key}=value takes {size:,} bytes and a process can "
                              f"receive at most {ENV_STRING_MAX:,} (128 KiB) per variable (put it in a file)")
        return value
    if value is None:
        raise fail(where, f'{show(value)} is not a value (for an empty value write {key}: "")')
    raise fail(where, f'{show(value)} is not text, a number or true/false (quote it, e.g. {key}: "text")')


def env_string_size(key: str, value: str) -> int:
    """The bytes execve copies for one variable: `KEY=value` and its NUL."""
    return len(key.encode()) + len(value.encode(errors="replace")) + 2


def env_size(env: Mapping[str, str]) -> int:
    """The bytes of ARG_MAX an environment takes: each variable's string and its pointer."""
    return sum(env_string_size(key, value) + 8 for key, value in env.items())


def check_env_total(env: Mapping[str, str], *, where: str, reserve: int = 0) -> None:
    """Raise when `env` (plus `reserve` bytes for variables added later) is more than a process can receive."""
    size = env_size(env) + reserve
    if size > ENV_TOTAL_MAX:
        room = f" ({reserve // 1024} KiB of it kept for the platform's own variables)" if reserve else ""
        raise fail(where, f"{len(env):,} variables take {size - reserve:,} bytes: a replica's whole environment "
                          f"may take at most {ENV_TOTAL_MAX:,} (1 MiB){room}; put large values in files")
