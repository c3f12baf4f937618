"""`env set` / `env unset` checked before anything is stored: every key and value, and the whole environment
each affected service's replicas would then get (spec env, stored env and the platform's own variables)."""

from __future__ import annotations

from stackblaze.server.control import Control
from stackblaze.server.user_env import merge_user_env
from stackblaze.spec import fields
from stackblaze.state.store import EnvVar

# STACKBLAZE_SERVICE, _REPLICA, _RELEASE, _SHUTDOWN_GRACE_SECONDS and the runner's marker, added at spawn.
SPAWN_ENV_RESERVE = 1024


def check_env_change(control: Control, project: str, *, service: str | None, set_values: dict[str, str],
                     unset: list[str]) -> None:
    """Raise a one-line UserError when a key or value could not reach a process, or when a service's whole
    environment would be more than execve accepts."""
    for key in [*set_values, *unset]:
        fields.check_env_key(key, where="env")
    for key, value in set_values.items():
        fields.check_env_value(value, where=f"env {key}", key=key)
    scope = service or ""
    before = control.store.env(project)
    touched = {*set_values, *unset}
    changed = [v for v in before if not (v.service == scope and v.key in touched)]
    changed += [EnvVar(key=k, value=v, secret=False, service=scope) for k, v in set_values.items()]
    for row in control.store.services(project):
        if service is not None and row.name != service:
            continue
        project_env, service_env = row.spec["project_env"], row.spec["env"]
        desired = control.desired(project, row.name)
        current = merge_user_env(project_env=project_env, service_env=service_env, stored=before, service=row.name)
        # What the replicas get besides the user's env: inherited PATH/HOME..., the runtime's, the defaults.
        platform = {k: v for k, v in (desired.env if desired else {}).items() if k not in current.values}
        after = merge_user_env(project_env=project_env, service_env=service_env, stored=changed, service=row.name)
        after_env = {**platform, **after.values}
        fields.check_env_total(after_env, where=f"env (service {row.name})", reserve=SPAWN_ENV_RESERVE)
