"""A service's user env — what its replicas see and its install and build steps see: one merge for both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stackblaze.state.store import EnvVar


@dataclass(frozen=True)
class UserEnv:
    values: dict[str, str]
    secrets: frozenset[str]  # the values of the secrets among them: never printed


def merge_user_env(*, project_env: Mapping[str, str], service_env: Mapping[str, str], stored: Iterable[EnvVar],
                   service: str) -> UserEnv:
    """The spec's `env:` (the project's, then the service's) under the stored `env set` values (project-wide,
    then the service's): each later one wins, so `env set` overrides the spec and a service overrides its
    project. Secrets of either stored scope are listed even when overridden; masking more is harmless."""
    scoped = [v for v in stored if v.service in ("", service)]
    values = {**project_env, **service_env}
    values.update({v.key: v.value for v in scoped if v.service == ""})
    values.update({v.key: v.value for v in scoped if v.service == service})
    return UserEnv(values, frozenset(v.value for v in scoped if v.secret and v.value))
