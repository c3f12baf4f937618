"""The Kubernetes engine as the daemon holds it (start, stop_all, close), and its LogSource."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stackblaze.engine.kubernetes.api import ClusterApi
from stackblaze.engine.kubernetes.manifests import object_name
from stackblaze.errors import StackblazeError
from stackblaze.spec.targets import Target, split_key

if TYPE_CHECKING:
    from stackblaze.engine.kubernetes.engine import KubernetesEngine


class ClusterLogs:
    """The pumped CRI files, and a crashed container's own log from the kubelet (`logs --previous`)."""

    def __init__(self, logs_dir: Path, pod_of: Callable[[str, str, int], tuple[str, str] | None],
                 api: ClusterApi) -> None:
        self._logs_dir = logs_dir
        self._pod_of = pod_of
        self._api = api

    def log_dir(self, project: str) -> Path:
        return self._logs_dir / project

    async def previous(self, project: str, service: str, replica: int, count: int) -> list[str]:
        found = self._pod_of(project, service, replica)
        if found is None:
            return []
        try:
            text = await self._api.logs(found[0], found[1], previous=True, timestamps=False, tail_lines=count)
        except (StackblazeError, OSError):
            return []
        return text.splitlines()



class KubernetesRunning:
    """The engine as the daemon holds it. `stop_all` leaves a real cluster's workers running (they are the
    cluster's, not this machine's); the fake target's stop with the daemon, so they are stopped."""

    def __init__(self, engine: KubernetesEngine, api: ClusterApi, target: Target) -> None:
        self._engine = engine
        self._api = api
        self._target = target

    @property
    def engine(self) -> KubernetesEngine:
        return self._engine

    async def stop_all(self) -> None:
        if self._target.kind == "fake":
            for key, service in self._engine.services():
                app = split_key(key)[0]
                await self._api.delete("Deployment", object_name(app, service), self._target.namespace or app)

    async def close(self) -> None:
        await self._engine.close()
        await self._api.close()
