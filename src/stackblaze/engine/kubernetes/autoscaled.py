"""The Kubernetes engine's autoscaled workers: after a worker's Deployment, its KEDA objects and the project's
queue-metrics server (autoscaling.py makes them); what a prune keeps of them; and their removal when a worker
stops being autoscaled (else KEDA would go on scaling its Deployment)."""

from __future__ import annotations

from stackblaze.engine.kubernetes.api import ClusterApi
from stackblaze.engine.kubernetes.autoscaling import autoscale_for, queue_metrics_for, uses_queue_metrics
from stackblaze.engine.kubernetes.backing import host_aliases
from stackblaze.engine.kubernetes.backing_services import BackingServices
from stackblaze.engine.kubernetes.keda import auth_name, keda_names
from stackblaze.engine.kubernetes.manifests import object_name
from stackblaze.engine.kubernetes.queue_metrics import metrics_name
from stackblaze.engine.protocol import Desired
from stackblaze.spec.targets import Target, split_key


class AutoscaledWorkers:
    def __init__(self, api: ClusterApi, target: Target, backing: BackingServices) -> None:
        self._api = api
        self._target = target
        self._backing = backing
        self._applied: dict[tuple[str, str], Desired] = {}  # the Desired whose KEDA objects were last applied
        self._metrics: set[str] = set()  # projects (store keys) whose queue-metrics server is applied

    def _namespace(self, key: str) -> tuple[str, str]:
        app = split_key(key)[0]
        return app, self._target.namespace or app

    @staticmethod
    def keep(app: str, others: list[Desired]) -> set[str]:
        """What a prune must keep for the project's remaining workers `others`."""
        names = {name for other in others for name in keda_names(app, other.service, other.autoscale)}
        if any(uses_queue_metrics(other) for other in others):
            names.add(metrics_name(app))
        return names

    async def apply(self, desired: Desired, others: list[Desired]) -> None:
        """After the worker's Deployment: its queue-metrics server (when its kind needs one), then its KEDA objects.
        Without KEDA on the cluster the apply fails in one line naming the CRD; a worker without autoscale never
        touches KEDA's kinds, unless it was autoscaled until now (then they are deleted)."""
        where = (desired.project, desired.service)
        if desired.autoscale is None:
            if self._applied.pop(where, None) is not None:
                app, namespace = self._namespace(desired.project)
                await self._api.delete("ScaledObject", object_name(app, desired.service), namespace)
                await self._api.delete("TriggerAuthentication", auth_name(app, desired.service), namespace)
                await self._api.delete("Secret", auth_name(app, desired.service), namespace)
                await self.apply_queue_metrics(desired.project, others)
            return
        if uses_queue_metrics(desired) or uses_queue_metrics(self._applied.get(where)):
            await self.apply_queue_metrics(desired.project, [desired, *others])
        for manifest in autoscale_for(desired):
            await self._api.apply(manifest)
        self._applied[where] = desired

    async def removed(self, key: str, service: str, others: list[Desired]) -> None:
        """After a prune for a removed service: the queue-metrics config without its queues."""
        self._applied.pop((key, service), None)
        if any(uses_queue_metrics(other) for other in others):
            await self.apply_queue_metrics(key, others)
        else:
            self._metrics.discard(key)  # the prune took the server away

    async def apply_queue_metrics(self, key: str, desireds: list[Desired]) -> None:
        """The project's queue-metrics objects over the workers that need them; deleted once none does."""
        ips: dict[str, str] = {}
        for each in desireds:
            if uses_queue_metrics(each):
                ips |= await self._backing.aliases(each)
        objects = queue_metrics_for(desireds, host_aliases(ips))
        for manifest in objects:
            await self._api.apply(manifest)
        if objects:
            self._metrics.add(key)
        elif key in self._metrics:
            self._metrics.discard(key)
            app, namespace = self._namespace(key)
            for kind in ("Service", "Deployment", "Secret", "RoleBinding", "Role", "ServiceAccount"):
                await self._api.delete(kind, metrics_name(app), namespace)

    def forget(self, key: str, service: str) -> None:
        self._applied.pop((key, service), None)
