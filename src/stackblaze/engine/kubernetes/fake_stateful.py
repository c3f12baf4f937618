"""The fake cluster's Services and StatefulSets: what a backing service (engine/kubernetes/backing.py) is made of.

A Service gets a cluster IP from 10.96.0.0/12 (the API server's default range) when it is created, keeps it
while it exists (spec.clusterIP is immutable: another one is refused) and a re-created one gets a new one, as
the real allocator does; its resourceVersion moves only when it changes. A StatefulSet's generation moves when
its spec does; its controller keeps pods `<name>-0..N-1` (labels from the template, plus the pod name and
revision labels the real controller adds) and replaces a pod whose template is not the current one, once the
old one has stopped (the RollingUpdate of one replica). The kubelet of fake_kubelet.py runs them.

Not modelled: volume claims (nothing is stored; the claim templates are kept as applied), ordered start of
more than one replica, partitions, OnDelete, readiness probes (Ready = running), headless Services, endpoints.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import ipaddress
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackblaze.engine.clock import Clock
from stackblaze.engine.kubernetes.fake_kubelet import FakePod, Kubelet
from stackblaze.errors import UserError

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")
Emit = Callable[[dict[str, Any], str, str, str, str], None]
# What an update may change (the API server refuses a change to any other field of a StatefulSet's spec).
MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
           "minReadySeconds")


def revision(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class FakeStatefulSet:
    name: str
    namespace: str
    manifest: dict[str, Any]
    generation: int = 1
    pods: dict[int, FakePod] = field(default_factory=dict)  # ordinal -> its pod
    terminating: list[FakePod] = field(default_factory=list)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.manifest["spec"]
        return spec


class FakeStateful:
    """The Services and StatefulSets of one fake cluster."""

    def __init__(self, clock: Clock, kubelet: Kubelet, emit: Emit, on_change: Callable[[], None]) -> None:
        self._clock = clock
        self._kubelet = kubelet
        self._emit = emit
        self._on_change = on_change
        self.services: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name): as stored
        self.stateful_sets: dict[tuple[str, str], FakeStatefulSet] = {}
        self._versions = itertools.count(1)
        # Skips the network's address and .1 (the `kubernetes` Service's), as the real allocator reserves it.
        self._free = (str(ip) for ip in itertools.islice(SERVICE_RANGE.hosts(), 1, None))

    # -- Services --------------------------------------------------------------------------------------

    def apply_service(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")
        applied = copy.deepcopy(manifest)
        applied["metadata"]["namespace"] = namespace
        spec = applied.setdefault("spec", {})
        if spec.get("type", "ClusterIP") != "ClusterIP":
            raise UserError(f"fake cluster: Service {name}: type {spec.get('type')!r} is not served here (ClusterIP)")
        current = self.services.get((namespace, name))
        ip = current["spec"]["clusterIP"] if current else None
        asked = spec.get("clusterIP")
        if asked and ip and asked != ip:
            raise UserError(f'Service "{name}" is invalid: spec.clusterIP: Invalid value: "{asked}": field is '
                            f"immutable")
        if ip is None:
            taken = {s["spec"]["clusterIP"] for s in self.services.values()}
            if asked and asked in taken:
                raise UserError(f'Service "{name}" is invalid: spec.clusterIP: Invalid value: "{asked}": '
                                f"provided IP is already allocated")
            ip = asked or next(ip for ip in self._free if ip not in taken)
        spec |= {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip]}
        if current is not None and {k: v for k, v in current.items() if k != "metadata"} == \
                {k: v for k, v in applied.items() if k != "metadata"} and \
                current["metadata"].get("labels") == applied["metadata"].get("labels"):
            return copy.deepcopy(current)  # an apply that changes nothing writes nothing
        applied["metadata"]["resourceVersion"] = str(next(self._versions))
        self.services[(namespace, name)] = applied
        return copy.deepcopy(applied)

    def service(self, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.services.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    # -- StatefulSets ----------------------------------------------------------------------------------

    def apply_stateful_set(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")
        applied = copy.deepcopy(manifest)
        applied["metadata"]["namespace"] = namespace
        spec = applied.setdefault("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            raise UserError(f"StatefulSet {name}: spec.selector {selector} does not match spec.template.metadata"
                            f".labels {labels}")
        current = self.stateful_sets.get((namespace, name))
        spec.setdefault("replicas", current.spec["replicas"] if current else 1)
        if current is None:
            self.stateful_sets[(namespace, name)] = FakeStatefulSet(name, namespace, applied)
        else:
            if current.spec.get("volumeClaimTemplates") != spec.get("volumeClaimTemplates"):
                raise UserError(f'StatefulSet.apps "{name}" is invalid: spec.volumeClaimTemplates: Invalid value: '
                                f"{spec.get('volumeClaimTemplates')}: field is immutable")  # as 1.37 says it
            if _frozen(current.spec) != _frozen(spec):
                raise UserError(f'StatefulSet.apps "{name}" is invalid: spec: Forbidden: updates to statefulset '
                                "spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
            if current.spec != spec:
                current.generation += 1
            current.manifest = applied
        self._on_change()
        return self.stateful_set(name, namespace) or {}

    def stateful_set(self, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.stateful_sets.get((namespace, name))
        if found is None:
            return None
        record = copy.deepcopy(found.manifest)
        record["metadata"]["generation"] = found.generation
        wanted = revision(found.spec["template"])
        pods = list(found.pods.values())
        updated = [p for p in pods if p.labels.get("controller-revision-hash") == f"{found.name}-{wanted}"]
        record["status"] = {"observedGeneration": found.generation, "replicas": len(pods),
                            "readyReplicas": sum(p.ready_since is not None for p in pods),
                            "availableReplicas": sum(p.ready_since is not None for p in pods),
                            "currentReplicas": len(updated), "updatedReplicas": len(updated),
                            "currentRevision": f"{found.name}-{wanted}", "updateRevision": f"{found.name}-{wanted}"}
        return record

    def delete(self, kind: str, name: str, namespace: str) -> bool:
        if kind == "Service":
            return self.services.pop((namespace, name), None) is not None
        found = self.stateful_sets.pop((namespace, name), None)
        if found is None:
            return False
        for pod in found.pods.values():  # its pods go with it; the claims would stay (none are modelled)
            self._kubelet.kill(pod, lambda: None)
        return True

    def selected(self, selector: dict[str, str], kept: set[str], namespace: str) -> list[str]:
        """`Service/name` and `StatefulSet/name` of each with these labels and a name not in `kept` (prune)."""
        stored = [("Service", key, service["metadata"]) for key, service in self.services.items()]
        stored += [("StatefulSet", key, sts.manifest["metadata"]) for key, sts in self.stateful_sets.items()]
        return [f"{kind}/{name}" for kind, (ns, name), metadata in sorted(stored, key=lambda each: each[:2])
                if ns == namespace and name not in kept
                and all(metadata.get("labels", {}).get(k) == v for k, v in selector.items())]

    def pods(self, namespace: str) -> list[FakePod]:
        return [pod for (ns, _), sts in sorted(self.stateful_sets.items()) if ns == namespace
                for pod in [*sts.pods.values(), *sts.terminating]]

    def fingerprint(self) -> list[tuple[str, int, int]]:
        return [(sts.name, len(sts.pods), len(sts.terminating)) for sts in self.stateful_sets.values()]

    # -- the controller --------------------------------------------------------------------------------

    def sync(self) -> None:
        for sts in list(self.stateful_sets.values()):
            self._sync(sts)

    def _sync(self, sts: FakeStatefulSet) -> None:
        involved = {"kind": "StatefulSet", "name": sts.name, "namespace": sts.namespace}
        wanted = f"{sts.name}-{revision(sts.spec['template'])}"
        for ordinal, pod in sorted(sts.pods.items()):
            if ordinal >= sts.spec["replicas"] or pod.labels.get("controller-revision-hash") != wanted:
                del sts.pods[ordinal]
                sts.terminating.append(pod)
                self._emit(involved, "Normal", "SuccessfulDelete", f"delete Pod {pod.name} in StatefulSet "
                                                                   f"{sts.name} successful", "statefulset-controller")
                self._kubelet.kill(pod, functools.partial(self._gone, sts, pod))
        for ordinal in range(sts.spec["replicas"]):
            name = f"{sts.name}-{ordinal}"
            if ordinal in sts.pods or any(p.name == name for p in sts.terminating):
                continue  # a replaced pod's name is free only once the old one has stopped
            template = copy.deepcopy(sts.spec["template"])
            labels = {**template.get("metadata", {}).get("labels", {}), "controller-revision-hash": wanted,
                      "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": str(ordinal)}
            pod = FakePod(name, sts.namespace, labels, sts.name, template, self._clock.time(),
                          owner_kind="StatefulSet")
            sts.pods[ordinal] = pod
            self._emit(involved, "Normal", "SuccessfulCreate", f"create Pod {name} in StatefulSet {sts.name} "
                                                               "successful", "statefulset-controller")
            self._kubelet.admit(pod)

    def _gone(self, sts: FakeStatefulSet, pod: FakePod) -> None:
        if pod in sts.terminating:
            sts.terminating.remove(pod)
            self._on_change()



def _frozen(spec: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key not in MUTABLE}
