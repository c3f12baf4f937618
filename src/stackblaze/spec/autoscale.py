"""`autoscale:` on a worker: bounds, the queues whose work drives the count, and the HPA's knobs.

The defaults are the HPA's and KEDA's, so that a worker scales the same on both engines, with two departures:
`poll` is 5 s locally (KEDA's pollingInterval default is 30 s) because one broker round trip costs well under
a millisecond, and `scale_up.window` is 10 s, not the HPA's 0 (see SCALE_UP). Both reach KEDA as written (the
ScaledObject's pollingInterval and behavior.scaleUp.stabilizationWindowSeconds), so the engines still agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from stackblaze.spec.duration import parse_duration
from stackblaze.spec.messages import did_you_mean, fail, show

QueueKind = Literal["celery", "rq", "bullmq", "dramatiq", "rabbitmq", "nats", "redis-list"]
QUEUE_KINDS: tuple[QueueKind, ...] = ("celery", "rq", "bullmq", "dramatiq", "rabbitmq", "nats", "redis-list")
# On Kubernetes KEDA's own scalers count these (keda.py); the others are read by stackblaze's queue-metrics server
# (metrics-api triggers), which also reports the job ages their readers give: latency_slo acts there only.
KEDA_NATIVE_KINDS: tuple[QueueKind, ...] = ("rabbitmq", "nats")
METRICS_API_KINDS: tuple[QueueKind, ...] = tuple(k for k in QUEUE_KINDS if k not in KEDA_NATIVE_KINDS)
DEFAULT_TOLERANCE = 0.1  # the HPA's cluster-wide default (--horizontal-pod-autoscaler-tolerance)
# What a kind's url looks like; a reference such as ${{cache.REDIS_URL}} is expanded at deploy.
URL_SCHEMES: dict[QueueKind, tuple[str, ...]] = {
    "celery": ("redis", "rediss"), "rq": ("redis", "rediss"), "bullmq": ("redis", "rediss"),
    "dramatiq": ("redis", "rediss"), "redis-list": ("redis", "rediss"), "rabbitmq": ("http", "https"),
    "nats": ("http", "https"),
}
URL_EXAMPLES: dict[QueueKind, str] = {
    "celery": "redis://cache.internal:6379/0", "rq": "redis://cache.internal:6379/0",
    "bullmq": "redis://cache.internal:6379", "dramatiq": "redis://cache.internal:6379/0",
    "redis-list": "redis://cache.internal:6379/0",
    "rabbitmq": "http://guest:guest@mq.internal:15672/%2F  (the management API: it counts unacked messages)",
    "nats": "http://nats.internal:8222  (the monitoring port; names: [STREAM/CONSUMER])",
}
Prefer = Literal["idle", "highest"]
Select = Literal["max", "min", "disabled"]
MAX_REPLICAS = 1000
MAX_PERIOD = 1800.0  # the HPA's limit on a policy's periodSeconds
FIELDS = {
    "min": "min: 0", "max": "max: 8", "queues": "queues: {kind: celery, url: ${{cache.REDIS_URL}}, names: [celery]}",
    "target_per_replica": "target_per_replica: 5", "latency_slo": "latency_slo: 30s", "poll": "poll: 5s",
    "idle_after": "idle_after: 300s", "activation": "activation: 0", "tolerance": "tolerance: 0.1",
    "scale_up": "scale_up: {window: 10s, policies: [{pods: 4, period: 15s}]}",
    "scale_down": "scale_down: {window: 300s, prefer: idle}", "on_metric_error": "on_metric_error: hold",
    "busy_probe": "busy_probe: python -m app.busy",
}
QUEUE_FIELDS = ("kind", "url", "names")
DIRECTION_FIELDS = ("window", "policies", "select", "prefer")
_FALLBACK = re.compile(r"fallback:([0-9]{1,4})")


@dataclass(frozen=True)
class Policy:
    """At most `value` pods (kind pods) or `value` percent of the current count (kind percent) per `period`."""

    kind: Literal["pods", "percent"]
    value: int
    period: float

    def to_dict(self) -> dict[str, object]:
        return {self.kind: self.value, "period": self.period}


@dataclass(frozen=True)
class Direction:
    window: float  # stabilization: down takes the highest recommendation of the window, up the lowest
    policies: tuple[Policy, ...]
    select: Select = "max"
    prefer: Prefer = "idle"  # scale-down only: which replicas stop first

    def to_dict(self) -> dict[str, object]:
        return {"window": self.window, "policies": [p.to_dict() for p in self.policies], "select": self.select,
                "prefer": self.prefer}


# The HPA's defaults (k8s.io/kubernetes pkg/apis/autoscaling/v2/defaults.go), but for the scale-up window: 10 s,
# not 0. The work of a steady load is noise around its mean (at 40 jobs/s x 100 ms, about 4 +/- 2 in any one
# read), and with window 0 one high poll adds replicas that the 300 s scale-down window then holds: a steady
# load climbed and flapped in 16 of 100 simulated runs (tests/unit/engine/autoscale/test_simulation.py). With
# 10 s two polls in a row must both ask for more; a real step up still lands within 10 s + a poll.
SCALE_UP = Direction(window=10.0, policies=(Policy("pods", 4, 15.0), Policy("percent", 100, 15.0)))
SCALE_DOWN = Direction(window=300.0, policies=(Policy("percent", 100, 15.0),))


@dataclass(frozen=True)
class Queues:
    kind: QueueKind
    url: str  # may hold ${{service.VAR}} references until the deploy expands them
    names: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "url": self.url, "names": list(self.names)}


@dataclass(frozen=True, kw_only=True)
class Autoscale:
    min: int = 0
    max: int
    queues: Queues
    target_per_replica: int | None = None  # None: the worker's concurrency (WORKER_CONCURRENCY), else 1
    latency_slo: float | None = None
    poll: float = 5.0
    idle_after: float = 300.0  # KEDA's cooldownPeriod: N -> 0 only after no work at all for this long
    activation: int = 0  # wake from 0 when ready + due > activation
    tolerance: float = DEFAULT_TOLERANCE
    scale_up: Direction = SCALE_UP
    scale_down: Direction = SCALE_DOWN
    fallback: int | None = None  # on_metric_error: None holds the count; N goes to N after 3 failed reads
    busy_probe: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"min": self.min, "max": self.max, "queues": self.queues.to_dict(),
                "target_per_replica": self.target_per_replica, "latency_slo": self.latency_slo, "poll": self.poll,
                "idle_after": self.idle_after, "activation": self.activation, "tolerance": self.tolerance,
                "scale_up": self.scale_up.to_dict(), "scale_down": self.scale_down.to_dict(),
                "on_metric_error": "hold" if self.fallback is None else f"fallback:{self.fallback}",
                "busy_probe": self.busy_probe}


At = Callable[[str], str]


def is_tolerance(value: object) -> bool:
    """A tolerance the HPA takes: a fraction from 0 to below 1 (the spec's rule, and the queue-metrics config's)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < 1


def _count(value: object, *, where: str, key: str, low: int, high: int, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise fail(where, f"{show(value)} is not a whole number from {low} to {high} (e.g. {key}: {example})")
    return value


def _keys(raw: dict[object, object], known: tuple[str, ...] | dict[str, str], at: At) -> None:
    for key in raw:
        if key not in known:
            guess = did_you_mean(key, known)
            hint = f"did you mean {guess}?" if guess else "known fields: " + ", ".join(known)
            raise fail(at(str(key)), f"unknown field ({hint})")


def _seconds(raw: dict[object, object], key: str, default: float | None, at: At, *, positive: bool = True
             ) -> float | None:
    if raw.get(key) is None:
        return default
    seconds = parse_duration(raw[key], where=at(key))
    if positive and seconds <= 0:
        raise fail(at(key), f"{show(raw[key])} must be more than 0 (e.g. {key}: 5s)")
    return seconds


def read_queues(raw: object, at: At) -> Queues:
    example = "(e.g. queues: {kind: celery, url: ${{cache.REDIS_URL}}, names: [celery]})"
    if not isinstance(raw, dict):
        raise fail(at(""), f"{show(raw)} is not a mapping {example}")
    _keys(raw, QUEUE_FIELDS, at)
    kind = raw.get("kind")
    if kind not in QUEUE_KINDS:
        guess = did_you_mean(kind, QUEUE_KINDS)
        raise fail(at("kind"), f"{show(kind)} is not a queue kind (" + (f"did you mean {guess}?" if guess else
                               "one of " + ", ".join(QUEUE_KINDS)) + ")")
    url = raw.get("url")
    if not isinstance(url, str) or not url:
        raise fail(at("url"), f"{show(url)} is not a URL (e.g. url: {URL_EXAMPLES[kind]})")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not url.startswith("${{") and scheme not in URL_SCHEMES[kind]:
        raise fail(at("url"), f"{show(url)} is not a {kind} URL (e.g. url: {URL_EXAMPLES[kind]})")
    names = raw.get("names", ["celery"] if kind == "celery" else None)
    if isinstance(names, str):
        names = [names]
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)):
        raise fail(at("names"), f"{show(names)} is not a list of distinct queue names (e.g. names: [default])")
    if kind == "nats" and not all(n.count("/") == 1 for n in names):
        raise fail(at("names"), f"{show(names)}: a nats queue is STREAM/CONSUMER (e.g. names: [ORDERS/workers])")
    return Queues(kind, url, tuple(names))


def _direction(raw: object, default: Direction, at: At, *, down: bool) -> Direction:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        example = "scale_down: {window: 300s, prefer: idle}" if down else "scale_up: {window: 10s}"
        raise fail(at(""), f"{show(raw)} is not a mapping (e.g. {example})")
    _keys(raw, DIRECTION_FIELDS if down else DIRECTION_FIELDS[:3], at)
    window = _seconds(raw, "window", default.window, at, positive=False)
    assert window is not None
    policies = default.policies
    if raw.get("policies") is not None:
        items = raw["policies"]
        if not isinstance(items, list) or not items:
            raise fail(at("policies"), f"{show(items)} is not a list of policies "
                                       "(e.g. policies: [{pods: 4, period: 15s}])")
        parsed = []
        for index, item in enumerate(items):
            here = f"policies[{index}]"
            if (not isinstance(item, dict) or set(item) - {"pods", "percent", "period"}
                    or len(set(item) & {"pods", "percent"}) != 1):
                raise fail(at(here), f"{show(item)} is not a policy: pods or percent, and a period "
                                     "(e.g. {pods: 4, period: 15s} or {percent: 100, period: 15s})")
            kind: Literal["pods", "percent"] = "pods" if "pods" in item else "percent"
            value = _count(item[kind], where=at(f"{here}.{kind}"), key=kind, low=1, high=MAX_REPLICAS * 10,
                           example=4)
            period = parse_duration(item.get("period", 15), where=at(f"{here}.period"))
            if not 0 < period <= MAX_PERIOD:
                raise fail(at(f"{here}.period"), f"{show(item.get('period'))} must be more than 0 and at most 30m, "
                                                 "as for the HPA (e.g. period: 15s)")
            parsed.append(Policy(kind, value, period))
        policies = tuple(parsed)
    select = raw.get("select", default.select)
    if select not in ("max", "min", "disabled"):
        raise fail(at("select"), f"{show(select)} is not max, min or disabled (e.g. select: max)")
    prefer = raw.get("prefer", default.prefer)
    if prefer not in ("idle", "highest"):
        raise fail(at("prefer"), f"{show(prefer)} is not idle or highest (idle: stop idle replicas first; "
                                 "e.g. prefer: idle)")
    return Direction(window, policies, select, prefer)


def read_autoscale(raw: object, at: At) -> Autoscale:
    """The `autoscale:` block of a worker; `at(field)` gives the `file:line: path` prefix of a field."""
    if not isinstance(raw, dict):
        raise fail(at(""), f"{show(raw)} is not a mapping (e.g. autoscale: {{min: 0, max: 8, queues: {{...}}}})")
    _keys(raw, FIELDS, at)
    for key in ("max", "queues"):
        if key not in raw:
            raise fail(at(key), f"missing (e.g. {FIELDS[key]})")
    low = _count(raw.get("min", 0), where=at("min"), key="min", low=0, high=MAX_REPLICAS, example=0)
    high = _count(raw["max"], where=at("max"), key="max", low=1, high=MAX_REPLICAS, example=8)
    if high < low:
        raise fail(at("max"), f"{high} is less than min ({low}) (e.g. max: {max(low, 8)})")
    target = None
    if raw.get("target_per_replica") not in (None, "auto"):
        target = _count(raw["target_per_replica"], where=at("target_per_replica"), key="target_per_replica",
                        low=1, high=1_000_000, example=5)
    tolerance = raw.get("tolerance", DEFAULT_TOLERANCE)
    if not is_tolerance(tolerance):
        raise fail(at("tolerance"), f"{show(tolerance)} is not a fraction from 0 to below 1 (e.g. tolerance: 0.1)")
    fallback = None
    on_error = raw.get("on_metric_error", "hold")
    if on_error != "hold":
        match = _FALLBACK.fullmatch(str(on_error)) if isinstance(on_error, str) else None
        if match is None or not low <= int(match.group(1)) <= high:
            raise fail(at("on_metric_error"), f"{show(on_error)} is not hold or fallback:N with N from min to max "
                                              f"(e.g. on_metric_error: fallback:{max(low, 1)})")
        fallback = int(match.group(1))
    probe = raw.get("busy_probe")
    if probe is not None and (not isinstance(probe, str) or not probe.strip()):
        raise fail(at("busy_probe"), f"{show(probe)} is not a command (e.g. busy_probe: python -m app.busy)")
    poll = _seconds(raw, "poll", 5.0, at)
    idle_after = _seconds(raw, "idle_after", 300.0, at, positive=False)
    assert poll is not None and idle_after is not None
    return Autoscale(
        min=low, max=high, queues=read_queues(raw["queues"], lambda key: at("queues" + (f".{key}" if key else ""))),
        target_per_replica=target, latency_slo=_seconds(raw, "latency_slo", None, at), poll=poll,
        idle_after=idle_after,
        activation=_count(raw.get("activation", 0), where=at("activation"), key="activation", low=0,
                          high=1_000_000, example=0),
        tolerance=float(tolerance),
        scale_up=_direction(raw.get("scale_up"), SCALE_UP, lambda key: at("scale_up" + (f".{key}" if key else "")),
                            down=False),
        scale_down=_direction(raw.get("scale_down"), SCALE_DOWN,
                              lambda key: at("scale_down" + (f".{key}" if key else "")), down=True),
        fallback=fallback, busy_probe=probe,
    )
