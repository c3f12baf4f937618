"""The fake cluster behind the ClusterApi the Kubernetes engine calls: what `--target` of kind `fake` runs on.

The fake is synchronous and lives on the event loop with its clock's timers; these methods only wrap it
(`follow` waits on the same clock). Errors are the fake's own (NotFoundError, UserError), as the real client
translates the API's 404 and 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from stackblaze.engine.clock import Clock
from stackblaze.engine.kubernetes.api import Manifest
from stackblaze.engine.kubernetes.fake import FakeCluster
from stackblaze.engine.kubernetes.fake_keda import FakeKeda
from stackblaze.engine.kubernetes.fake_kubelet import stamp_nano
from stackblaze.errors import NotFoundError, UserError
from stackblaze.spec.targets import Target

FOLLOW_POLL = 1.0  # cluster seconds between looks at a followed log (the kubelet's own tail wakes on writes)


def _seconds(at: str | None) -> float | None:
    return None if at is None else datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


class FakeApi:
    def __init__(self, cluster: FakeCluster, *, follow_poll: float = FOLLOW_POLL, keda: FakeKeda | None = None
                 ) -> None:
        self.cluster = cluster
        self.keda = keda or FakeKeda()  # KEDA's kinds, beside the cluster's own
        self._clock = cluster.clock
        self._follow_poll = follow_poll

    async def apply(self, manifest: Manifest) -> Manifest:
        if FakeKeda.serves(manifest):
            try:
                return self.keda.apply(manifest)
            except NotFoundError as error:  # as client.py words the real API server's 404
                from stackblaze.engine.kubernetes.keda import missing_crd

                raise UserError(f"fake cluster: {missing_crd(manifest['kind'])}") from error
        return self.cluster.apply(manifest)

    async def deployment(self, name: str, namespace: str) -> Manifest | None:
        try:
            return self.cluster.get(name, namespace)
        except NotFoundError:
            return None

    async def service(self, name: str, namespace: str) -> Manifest | None:
        return self.cluster.stateful.service(name, namespace)

    async def stateful_set(self, name: str, namespace: str) -> Manifest | None:
        return self.cluster.stateful.stateful_set(name, namespace)

    async def deployments(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return self.cluster.deployments(namespace, selector)

    async def scale(self, name: str, namespace: str, replicas: int) -> Manifest:
        return self.cluster.set_scale(name, replicas, namespace)

    async def restart(self, name: str, namespace: str, at: str) -> Manifest:
        return self.cluster.restart(name, namespace, at)

    async def delete(self, kind: str, name: str, namespace: str) -> bool:
        if kind in ("ScaledObject", "TriggerAuthentication"):
            return self.keda.delete(kind, name, namespace)
        return self.cluster.delete_object(kind, name, namespace)

    async def prune(self, selector: dict[str, str], keep: set[str], namespace: str) -> list[str]:
        return self.keda.prune(selector, keep, namespace) + self.cluster.prune_objects(selector, keep, namespace)

    async def replica_sets(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        found: list[Manifest] = []
        for deployment in self.cluster.deployments(namespace):
            for rs in self.cluster.replica_sets(deployment["metadata"]["name"], namespace):
                labels = rs["metadata"]["labels"]
                if all(labels.get(k) == v for k, v in selector.items()):
                    found.append(rs)
        return found

    async def pods(self, namespace: str, selector: dict[str, str]) -> list[Manifest]:
        return self.cluster.pods(namespace, selector)

    async def logs(self, pod: str, namespace: str, *, previous: bool = False, timestamps: bool = True,
                   tail_lines: int | None = None, since_time: str | None = None) -> str:
        return self.cluster.logs(pod, namespace, previous=previous, timestamps=timestamps, tail_lines=tail_lines,
                                 since_time=_seconds(since_time))

    async def follow(self, pod: str, namespace: str, *, since_time: str | None = None) -> AsyncIterator[str]:
        """Each line of the container's current run (with its timestamp) as it is written; ends when that run
        ends or the pod is gone, as the real API's follow does. No running container: its log, then the end."""
        found = self.cluster.pod(pod, namespace)
        since = _seconds(since_time)
        if found.started_at is None:  # no running container: as `logs` without follow, the ended run's lines
            for line in self.cluster.logs(pod, namespace, timestamps=True, since_time=since).splitlines():
                yield line
            return
        run = found.log  # the kubelet starts a new list for each run: this one holds the run's lines to its end
        sent, gone = 0, False
        while True:
            while sent < len(run):
                when, text = run[sent]
                sent += 1
                if since is None or when >= since:
                    yield f"{stamp_nano(when)} {text}"
            if gone or found.log is not run or found.started_at is None:  # the run ended, or its pod is gone
                return
            await self._sleep(self._follow_poll)
            try:
                found = self.cluster.pod(pod, namespace)
            except NotFoundError:
                gone = True  # what the run wrote last is sent above, then the end

    async def _sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        handle = self._clock.call_at(self._clock.time() + seconds, wake)
        try:
            await woken
        finally:
            handle.cancel()

    async def events(self, namespace: str) -> list[Manifest]:
        return self.cluster.events(namespace)

    async def close(self) -> None:
        return None


def fake_from_target(target: Target, clock: Clock) -> FakeCluster:
    """A fake cluster whose containers behave as the target's `behaviours` say (by start command or image)."""
    cluster = FakeCluster(clock)
    for key, behaviour in target.behaviours.items():
        fields: dict[str, Any] = dict(behaviour)
        if "lines" in fields:
            fields["lines"] = tuple(fields["lines"])
        cluster.behave(key, **fields)
    return cluster
