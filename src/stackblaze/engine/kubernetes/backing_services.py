"""The Kubernetes engine's side of backing services: applying a redis or postgres service (its Secret, Service and
StatefulSet), the cluster IPs the workers' hostAliases point at, and the look each sync takes for a Service
that was deleted or re-created.

A worker's reconcile only reads Services (its own Deployment gets the hostAliases); it never applies a backing
service's objects, so a worker deploy leaves the StatefulSet and the Service as they are. A Service's cluster IP
is read back from the API server and kept per Service; a sync that finds it gone re-creates it (a new IP: the
allocator picks one), and every worker that points at the old IP, or was applied while the Service did not
exist yet, is reconciled again (a rollout to the new hostAliases).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stackblaze.engine.kubernetes.api import ClusterApi
from stackblaze.engine.kubernetes.backing import BackingObjects, backing_for
from stackblaze.engine.kubernetes.manifests import object_name
from stackblaze.engine.protocol import Desired, EngineHooks
from stackblaze.errors import UserError
from stackblaze.spec.backing import internal_host

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (the store's project key "acme@prod", service)


class BackingServices:
    def __init__(self, api: ClusterApi, hooks: EngineHooks, reconcile_later: Callable[[str, str], None]) -> None:
        self._api = api
        self._hooks = hooks
        self._reconcile_later = reconcile_later  # engine.reconcile as a task: a sync holds the lock it takes
        self._applied: dict[Key, BackingObjects] = {}
        self._where: dict[Key, tuple[str, str]] = {}  # backing service -> (namespace, Service/StatefulSet name)
        self._ips: dict[tuple[str, str], str] = {}  # (namespace, Service name) -> spec.clusterIP
        # Per worker: the IP its applied Deployment points each name at (None: applied without that name).
        self._used: dict[Key, dict[str, str | None]] = {}

    async def apply(self, desired: Desired) -> None:
        """Server-side apply the Secret (auth: password), then the Service, then the StatefulSet; nothing when
        they are what this engine last applied (a deploy reconciles every service; an unchanged one is left
        alone, its generation and resourceVersion with it)."""
        objects = backing_for(desired)
        key = (desired.project, desired.service)
        if self._applied.get(key) == objects:
            return
        if objects.secret is not None:
            await self._api.apply(objects.secret)
        service = await self._api.apply(objects.service)
        try:
            await self._api.apply(objects.stateful_set)
        except UserError as error:
            # 1.37 says "spec.volumeClaimTemplates: ... field is immutable", older servers "spec: Forbidden:
            # updates to statefulset spec for fields other than ..."
            if not any(words in str(error) for words in ("spec.volumeClaimTemplates", "updates to statefulset spec")):
                raise
            name = objects.stateful_set["metadata"]["name"]
            raise UserError(f"service {desired.service}: its StatefulSet {name} cannot take this change (a "
                            f"volume claim's size is fixed once made): kubectl delete statefulset {name} -n "
                            f"{desired.namespace} --cascade=orphan, then deploy again (the PVC and its data stay; "
                            f"grow the PVC itself if its StorageClass allows)") from error
        metadata = objects.service["metadata"]
        self._where[key] = (metadata["namespace"], metadata["name"])
        self._applied[key] = objects
        self._learn(desired.project, metadata["namespace"], metadata["name"], service)

    async def aliases(self, desired: Desired) -> dict[str, str]:
        """name -> cluster IP for each backing service a worker reaches as <name>.internal. A Service that does
        not exist yet is left out (logged, and an event): the worker is applied again when it appears."""
        if desired.app is None or desired.namespace is None:
            return {}
        found: dict[str, str] = {}
        used: dict[str, str | None] = {}
        for name in desired.internal:
            where = (desired.namespace, object_name(desired.app, name))
            ip = self._ips.get(where)
            if ip is None:
                service = await self._api.service(*reversed(where))
                ip = _cluster_ip(service)
                if ip is not None:
                    self._ips[where] = ip
            used[name] = ip
            if ip is not None:
                found[name] = ip
            elif self._used.get((desired.project, desired.service), {}).get(name, "") is not None:
                message = (f"{desired.service}: {internal_host(name)} left out of its hostAliases: Service "
                           f"{where[1]} is not in namespace {where[0]} yet (the worker is applied again when it is)")
                log.warning("%s: %s", desired.project, message)
                self._hooks.record_event(project=desired.project, service=desired.service, kind="internal-pending",
                                         message=message, details={"name": name, "service": where[1]})
        self._used[(desired.project, desired.service)] = used
        return found

    async def check(self) -> None:
        """One look at every backing service this engine applied: one deleted (its Service or StatefulSet) is
        applied again; a Service whose cluster IP changed re-points the workers."""
        for key, (namespace, name) in list(self._where.items()):
            service = await self._api.service(name, namespace)
            stateful_set = await self._api.stateful_set(name, namespace)
            if key not in self._where:  # removed while we looked
                continue
            if service is None or stateful_set is None:
                gone = "Service" if service is None else "StatefulSet"
                self._hooks.record_event(project=key[0], service=key[1], kind="recreate",
                                         message=f"{key[1]}: its {gone} {name} was deleted from namespace "
                                                 f"{namespace}: applied again",
                                         details={"kind": gone, "name": name})
                self._applied.pop(key, None)
                self._reconcile_later(*key)
                continue
            self._learn(key[0], namespace, name, service)

    def _learn(self, project: str, namespace: str, name: str, service: dict[str, Any]) -> None:
        ip = _cluster_ip(service)
        if ip is None or self._ips.get((namespace, name)) == ip:
            return
        self._ips[(namespace, name)] = ip
        backing = next((s for (p, s), where in self._where.items() if p == project and where == (namespace, name)),
                       None)
        for (key, worker), used in list(self._used.items()):
            if key == project and backing in used and used[backing] != ip:
                self._reconcile_later(key, worker)

    def forget(self, project: str, service: str | None = None) -> None:
        """A removed service (or project): nothing of it is looked at or applied again."""
        for key in [k for k in (*self._where, *self._used) if k[0] == project and service in (None, k[1])]:
            where = self._where.pop(key, None)
            if where is not None:
                self._ips.pop(where, None)
            self._applied.pop(key, None)
            self._used.pop(key, None)


def _cluster_ip(service: dict[str, Any] | None) -> str | None:
    ip = ((service or {}).get("spec") or {}).get("clusterIP")
    return ip if ip and ip != "None" else None  # "None": a headless Service, which has no IP to point at
