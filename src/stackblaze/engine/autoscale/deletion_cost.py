"""Idle pods first on a Kubernetes scale-down: the queue-metrics server writes each RQ or Celery worker pod's
`controller.kubernetes.io/pod-deletion-cost` from its busy state, once per poll, and the ReplicaSet controller
deletes the cheapest of the pods it otherwise ranks equal (scheduled, running, ready) when the HPA scales down.

A pod's worker is found by hostname, since a pod's hostname is its name: RQ writes `hostname` in the worker's hash
(the hashes busy.py reads), and a Celery heartbeat (celery_busy.py) names its node `name@host` (`celery@<host>`,
or what `-n` says: `-n name@%h` keeps the host; pids cannot tell pods apart, each has its own pid namespace).
Cost: idle 0, unknown 1, busy 1000 + the jobs it holds. An unknown pod (no worker registered yet, no recent
heartbeat) is annotated rather than left out: a pod without the annotation costs 0, the same as a known idle one,
and locally an unknown replica stops after the idle ones and before the busy ones (victims.py); 1 says the same.

Limits: a hint refreshed once per poll (a pod that became busy since may still be deleted first); a read of the
broker that fails leaves the annotations as they were (the next poll writes them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from stackblaze.engine.autoscale.busy import Busy, run_script
from stackblaze.engine.autoscale.celery_busy import IDLE_FRESH, STALE, CeleryHeartbeats, Heartbeat
from stackblaze.engine.autoscale.work import redact
from stackblaze.errors import StackblazeError

if TYPE_CHECKING:
    from fastapi import FastAPI

COST = "controller.kubernetes.io/pod-deletion-cost"
IDLE_COST, UNKNOWN_COST, BUSY_COST = 0, 1, 1000
MAX_JOBS = 1_000_000  # the annotation is an int32: busy costs stay far below its limit
BUSY_KINDS = ("rq", "celery")  # the queue kinds with a busy source
ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the kubelet mounts a pod's token
# Each registered RQ worker's hostname and state, and how many executions it holds: the hashes busy.WORKERS reads,
# in one trip.
RQ_HOSTS = """
local out = {}
for _, key in ipairs(redis.call('SMEMBERS', 'rq:workers')) do
  local f = redis.call('HMGET', key, 'hostname', 'state')
  out[#out + 1] = {f[1] or '', f[2] or '', redis.call('SCARD', key .. ':executions')}
end
return out
"""

log = logging.getLogger("stackblaze.queue_metrics")
Manifest = dict[str, Any]


class PodApi(Protocol):
    """What a pass needs of the cluster (engine/kubernetes/client.py's KubeClient)."""

    async def pods(self, namespace: str, selector: dict[str, str]) -> list[Manifest]: ...

    async def annotate_pod(self, name: str, namespace: str, annotations: dict[str, str]) -> Manifest: ...


@dataclass(frozen=True)
class Target:
    """One worker whose pods are annotated: its service, its queues' kind and URL, its pods' labels, its poll."""

    service: str
    kind: str
    url: str
    selector: dict[str, str]
    poll: float


def cost(busy: Busy | None) -> int:
    if busy is None or busy.busy is None:
        return UNKNOWN_COST
    if not busy.busy:
        return IDLE_COST
    return BUSY_COST + min(max(busy.jobs or 1, 1), MAX_JOBS)


def node_host(node: str) -> str:
    """The host part of a Celery node name (`name@host`; a name without '@' is all host, as Celery splits it)."""
    return node.split("@", 1)[-1]


def _add(found: dict[str, Busy], host: str, busy: bool, jobs: int, source: str) -> None:
    """Several workers on one host (a pod running two): busy if any is, their jobs added."""
    if host in found:
        before = found[host]
        busy, jobs = busy or bool(before.busy), jobs + (before.jobs or 0)
    found[host] = Busy(busy, jobs, source)


def rq_by_host(rows: Iterable[Sequence[Any]]) -> dict[str, Busy]:
    """host -> busy state, from RQ_HOSTS's rows (hostname, state, executions)."""
    found: dict[str, Busy] = {}
    for host, state, executions in rows:
        if not host:
            continue
        busy = state == "busy" or int(executions or 0) > 0
        _add(found, str(host), busy, int(executions or 0) or (1 if busy else 0), "rq")
    return found


async def rq_hosts(url: str, *, timeout: float = 5.0) -> dict[str, Busy]:
    """Raises RedisError when Redis cannot be read."""
    return rq_by_host(await run_script(url, RQ_HOSTS, timeout=timeout))


class NodeHeartbeats(CeleryHeartbeats):
    """Celery heartbeats kept by node name (CeleryHeartbeats keeps them by pid, which only one host can use)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        super().__init__(clock=clock, timeout=timeout)
        self._nodes: dict[str, tuple[Heartbeat, float]] = {}

    def heard(self, beat: Heartbeat) -> None:
        if beat.type == "worker-offline":
            self._nodes.pop(beat.hostname, None)
        elif beat.hostname:
            self._nodes[beat.hostname] = (beat, self._clock())

    def by_host(self) -> dict[str, Busy]:
        """host -> busy state, by celery_busy's rules: a busy word holds STALE intervals, an idle one IDLE_FRESH."""
        now = self._clock()
        found: dict[str, Busy] = {}
        for node, (beat, at) in list(self._nodes.items()):
            age = now - at
            if age > STALE * beat.freq:
                del self._nodes[node]
            elif beat.active > 0 or age <= IDLE_FRESH * beat.freq:
                _add(found, node_host(node), beat.active > 0, beat.active, "celery")
        return found


def _host_of(found: Mapping[str, Busy], pod: str) -> Busy | None:
    # A worker that wrote its FQDN (a pod with a subdomain) is still its pod's.
    return found.get(pod) or next((busy for host, busy in found.items() if host.split(".", 1)[0] == pod), None)


def plan_costs(pods: Iterable[Manifest], found: Mapping[str, Busy]) -> dict[str, int]:
    """pod name -> the cost to write, for the pods whose annotation differs (a terminating pod is left alone)."""
    changes = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        name = metadata.get("name")
        if not name or metadata.get("deletionTimestamp"):
            continue
        wanted = cost(_host_of(found, name))
        if (metadata.get("annotations") or {}).get(COST) != str(wanted):
            changes[name] = wanted
    return changes


class PodCosts:
    """One worker's pods, annotated once per poll by `run` (or a pass at a time by `pass_once`)."""

    def __init__(self, target: Target, api: PodApi, namespace: str, *, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.target, self._api, self._namespace, self._timeout = target, api, namespace, timeout
        self._clock, self._sleep = clock, sleep
        self._beats = NodeHeartbeats(timeout=timeout) if target.kind == "celery" else None
        self._said: str | None = None  # the error last logged: said once, not at every poll

    async def _busy(self) -> dict[str, Busy]:
        if self._beats is not None:
            self._beats.follow(self.target.url)
            return self._beats.by_host()
        return await rq_hosts(self.target.url, timeout=self._timeout)

    async def pass_once(self) -> dict[str, int]:
        """The pods patched (name -> cost). Raises RedisError/OSError (the broker) or StackblazeError (the API)."""
        found = await self._busy()
        pods = await self._api.pods(self._namespace, self.target.selector)
        changes = plan_costs(pods, found)
        for name, value in sorted(changes.items()):
            await self._api.annotate_pod(name, self._namespace, {COST: str(value)})
        return changes

    async def run(self) -> None:
        name = self.target.service
        while True:
            began = self._clock()
            try:
                changes = await self.pass_once()
            except (RedisError, OSError, StackblazeError) as error:  # a hint: the next poll tries again
                said = f"{name}: pod deletion costs not written: {redact(str(error))}"
                if said != self._said:
                    log.warning("%s", said)
                    self._said = said
            else:
                if self._said is not None:
                    log.info("%s: pod deletion costs written again", name)
                    self._said = None
                if changes:
                    log.info("%s: pod deletion cost %s", name,
                             ", ".join(f"{pod}={value}" for pod, value in sorted(changes.items())))
            await self._sleep(max(0.0, began + self.target.poll - self._clock()))

    async def close(self) -> None:
        if self._beats is not None:
            await self._beats.close()


def targets(text: str, where: str, *, default_poll: float) -> list[Target]:
    """The workers of the server's config (metrics_server's JSON) that carry `pods` (their pods' labels)."""
    services = json.loads(text).get("services") or {}
    out = []
    for name, raw in sorted(services.items()):
        selector = raw.get("pods")
        if selector is None:
            continue
        if (not isinstance(selector, dict) or not selector
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items())):
            raise SystemExit(f"{where}: services.{name}.pods: {selector!r} is not a mapping of label to value "
                             f"(e.g. {{\"app.kubernetes.io/instance\": \"shop-worker\"}})")
        if raw.get("kind") not in BUSY_KINDS:
            raise SystemExit(f"{where}: services.{name}.pods: kind {raw.get('kind')!r} has no busy source "
                             f"(only {', '.join(BUSY_KINDS)}): leave 'pods' out")
        poll = float(raw.get("poll") or default_poll)
        out.append(Target(str(name), str(raw["kind"]), str(raw["url"]), dict(selector), poll))
    return out


def in_cluster(account_dir: str = ACCOUNT_DIR, environ: Mapping[str, str] = os.environ) -> bool:
    """A pod with a service account token: where the server may annotate its workers' pods."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and Path(account_dir, "token").is_file()


@contextlib.asynccontextmanager
async def running(found: Sequence[Target], api: PodApi, namespace: str) -> AsyncIterator[list[PodCosts]]:
    """Each target's loop as a background task while the block runs."""
    costs = [PodCosts(target, api, namespace) for target in found]
    tasks = [asyncio.create_task(c.run(), name=f"pod deletion costs {c.target.service}") for c in costs]
    try:
        yield costs
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(c.close() for c in costs), return_exceptions=True)


def with_pod_costs(app: FastAPI, text: str, where: str, *, default_poll: float, account_dir: str = ACCOUNT_DIR,
                   environ: Mapping[str, str] = os.environ) -> FastAPI:
    """`app` (the queue-metrics server) annotating its config's workers' pods while it runs, when it runs in a
    cluster with a token; `app` unchanged otherwise (no worker with `pods`, or no cluster)."""
    found = targets(text, where, default_poll=default_poll)
    if not found:
        return app
    if not in_cluster(account_dir, environ):
        log.info("no service account token in %s: pod deletion costs are not written", account_dir)
        return app
    from stackblaze.engine.kubernetes.client import KubeClient  # the kubernetes library only where it is used

    try:
        namespace = Path(account_dir, "namespace").read_text(encoding="utf-8").strip()
    except OSError as error:
        log.warning("pod deletion costs are not written: %s/namespace: %s", account_dir, error.strerror or error)
        return app
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        async with inner(served) as state:
            try:
                api = KubeClient.in_cluster(account_dir, environ)
            except StackblazeError as error:  # the metrics still serve: the costs are a hint
                log.warning("pod deletion costs are not written: %s", error)
                yield state
                return
            try:
                async with running(found, api, namespace):
                    yield state
            finally:
                await api.close()

    app.router.lifespan_context = lifespan
    return app
