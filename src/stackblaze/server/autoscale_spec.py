"""An autoscaled worker's spec as the daemon stored it, its queues' URL as the daemon reaches it, and the
replica numbers that fit a count."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, cast

from stackblaze.spec.autoscale import Autoscale, Direction, Policy, Prefer, QueueKind, Queues, Select
from stackblaze.spec.backing import internal_host, service_variables
from stackblaze.spec.model import BackingType
from stackblaze.spec.references import expand

if TYPE_CHECKING:
    from stackblaze.server.control import Control


def autoscale_of(spec: Mapping[str, Any]) -> Autoscale | None:
    """The `autoscale:` of a stored service spec (deploying.py's service_spec), None when it has none."""
    raw = spec.get("autoscale")
    if not raw:
        return None
    return _parse(_frozen(raw))


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    return {k: v for k, v in value}


def _direction(raw: Mapping[str, Any]) -> Direction:
    policies = []
    for item in raw["policies"]:
        policy = _thawed(item)
        kind: Literal["pods", "percent"] = "pods" if "pods" in policy else "percent"
        policies.append(Policy(kind, int(policy[kind]), float(policy["period"])))
    return Direction(float(raw["window"]), tuple(policies), cast(Select, raw["select"]), cast(Prefer, raw["prefer"]))


@lru_cache(maxsize=256)
def _parse(frozen: Any) -> Autoscale:
    raw = _thawed(frozen)
    queues = _thawed(raw["queues"])
    on_error = str(raw.get("on_metric_error") or "hold")
    return Autoscale(
        min=int(raw["min"]), max=int(raw["max"]),
        queues=Queues(cast(QueueKind, queues["kind"]), str(queues["url"]), tuple(queues["names"])),
        target_per_replica=raw.get("target_per_replica"), latency_slo=raw.get("latency_slo"),
        poll=float(raw["poll"]), idle_after=float(raw["idle_after"]), activation=int(raw["activation"]),
        tolerance=float(raw["tolerance"]), scale_up=_direction(_thawed(raw["scale_up"])),
        scale_down=_direction(_thawed(raw["scale_down"])),
        fallback=None if on_error == "hold" else int(on_error.split(":", 1)[1]), busy_probe=raw.get("busy_probe"))


def daemon_url(control: Control, project: str, url: str) -> str:
    """`url` with `${{cache.REDIS_URL}}` expanded for the daemon: a backing service's address on this
    machine, never `<name>.internal`, which only the replicas' own hosts file resolves."""
    if "${{" not in url:
        return url
    variables: dict[str, dict[str, str]] = {}
    kinds: dict[str, tuple[BackingType, bool]] = {}
    for row in control.backing.rows.rows(project):
        kind: BackingType = "redis" if row.kind == "redis" else "postgres"
        host = row.address or internal_host(row.service)
        variables[row.service] = service_variables(kind, row.service, host=host, password=row.secret)
        kinds[row.service] = (kind, row.secret is not None)
    return expand({"queues.url": url}, variables, backing=kinds).values["queues.url"]


def fit_indexes(indexes: tuple[int, ...] | None, count: int) -> tuple[int, ...]:
    """`count` replica numbers from `indexes` (1..N when None): the lowest kept, the lowest free added."""
    kept = sorted(set(indexes or range(1, count + 1)))[:max(0, count)]
    free = (n for n in range(1, count + len(kept) + 2) if n not in kept)
    return tuple(sorted(kept + [next(free) for _ in range(count - len(kept))]))
