"""Backing services (a project's Redis or PostgreSQL): their port and the variables workers reference.

One definition for both engines, so that `${{cache.REDIS_URL}}` is the same string locally and on a cluster:
`redis://cache.internal:6379` (the host is `<name>.internal`; where a machine cannot give replicas their
own hosts file, the local engine passes the service's loopback address as `host` instead).
"""

from __future__ import annotations

from urllib.parse import quote

from stackblaze.spec.model import BackingType

PORTS: dict[BackingType, int] = {"redis": 6379, "postgres": 5432}
# The role and database a project's PostgreSQL is made with.
POSTGRES_USER = "app"
POSTGRES_DATABASE = "app"
# What `${{<service>.<NAME>}}` may name, per type (PASSWORD only with `auth: password`).
VARIABLES: dict[BackingType, tuple[str, ...]] = {
    "redis": ("REDIS_URL", "HOST", "PORT", "PASSWORD"),
    "postgres": ("DATABASE_URL", "HOST", "PORT", "USER", "PASSWORD", "DATABASE"),
}


def internal_host(name: str) -> str:
    """The name a backing service answers to inside the project's workers."""
    return f"{name}.internal"


def service_variables(kind: BackingType, name: str, *, host: str | None = None,
                      password: str | None = None) -> dict[str, str]:
    """The values `${{name.VAR}}` expands to. `password` None: no auth (loopback or cluster-internal only)."""
    host = host or internal_host(name)
    port = PORTS[kind]
    secret = quote(password, safe="") if password else None
    values = {"HOST": host, "PORT": str(port)}
    if password is not None:
        values["PASSWORD"] = password
    if kind == "redis":
        values["REDIS_URL"] = f"redis://{f':{secret}@' if secret else ''}{host}:{port}"
    else:
        credentials = POSTGRES_USER + (f":{secret}" if secret else "")
        values.update({"USER": POSTGRES_USER, "DATABASE": POSTGRES_DATABASE,
                       "DATABASE_URL": f"postgresql://{credentials}@{host}:{port}/{POSTGRES_DATABASE}"})
    return values
