"""`${{cache.REDIS_URL}}` in env values: found and checked when the spec is read, expanded at deploy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stackblaze.errors import UserError
from stackblaze.spec.backing import VARIABLES
from stackblaze.spec.messages import did_you_mean
from stackblaze.spec.model import BackingType

# Railway's syntax; inner spaces allowed as in `${{ cache.REDIS_URL }}`.
REFERENCE = re.compile(r"\$\{\{\s*([^.}\s]+)\.([^}\s]+)\s*\}\}")


@dataclass(frozen=True)
class Expanded:
    values: dict[str, str]
    secrets: frozenset[str]  # values that now carry a password: never printed


def references(value: str) -> list[tuple[str, str]]:
    """The (service, variable) pairs a value refers to, in order."""
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(value)]


def problem(service: str, variable: str, backing: Mapping[str, tuple[BackingType, bool]]) -> str | None:
    """What is wrong with `${{service.variable}}` for a project whose backing services are `backing`
    (name -> (type, has a password)), or None when it names a value that exists."""
    if service not in backing:
        guess = did_you_mean(service, backing)
        known = ", ".join(sorted(backing)) or "none: add one (e.g. - {name: cache, type: redis})"
        return (f"${{{{{service}.{variable}}}}} names no redis or postgres service of the project ("
                + (f"did you mean {guess}?)" if guess else f"backing services: {known})"))
    kind, has_password = backing[service]
    names = [v for v in VARIABLES[kind] if v != "PASSWORD" or has_password]
    if variable in names:
        return None
    if variable == "PASSWORD":
        return f"${{{{{service}.PASSWORD}}}}: {service} has no password (set auth: password on it)"
    guess = did_you_mean(variable, names)
    return (f"${{{{{service}.{variable}}}}}: {service} ({kind}) has no {variable} ("
            + (f"did you mean {guess}?)" if guess else f"it has {', '.join(names)})"))


def expand(values: Mapping[str, str], variables: Mapping[str, Mapping[str, str]], *,
           backing: Mapping[str, tuple[BackingType, bool]]) -> Expanded:
    """`values` with every reference replaced from `variables` (service -> its service_variables). A
    reference to nothing raises UserError naming the variable, the reference and the fix. A value that
    takes in a password (PASSWORD or a URL carrying one) is listed as a secret."""
    out: dict[str, str] = {}
    secrets: set[str] = set()
    for key, value in values.items():
        if "${{" not in value:
            out[key] = value
            continue
        carries_secret = False
        for service, variable in references(value):
            wrong = problem(service, variable, backing)
            if wrong is not None:
                raise UserError(f"env {key}: {wrong}")
            carries_secret |= backing[service][1] and variable in ("PASSWORD", "REDIS_URL", "DATABASE_URL")
        expanded = REFERENCE.sub(lambda m: variables[m.group(1)][m.group(2)], value)
        out[key] = expanded
        if carries_secret:
            secrets.add(expanded)
    return Expanded(out, frozenset(secrets))
