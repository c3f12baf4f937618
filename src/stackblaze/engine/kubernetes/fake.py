"""A fake Kubernetes cluster for unit tests: Deployments, their ReplicaSets and pods, driven by the engine's Clock.

It implements the behaviour the Kubernetes engine reads, not canned answers. `apply` takes an apps/v1
Deployment dict as the API has it (server-side-apply-like: the applied spec replaces the stored one, and a
spec without `replicas` keeps the current scale, as when /scale owns it); a new pod template hash makes a new
ReplicaSet `<deployment>-<hash>` whose pods are `<deployment>-<hash>-<5 chars>`. The deployment controller
rolls by ReplicaSet with maxSurge/maxUnavailable (or Recreate) and minReadySeconds (available = Ready, here
= running, for minReadySeconds), and writes status (replicas, updated/ready/available, observedGeneration,
Progressing: ReplicaSetUpdated / NewReplicaSetAvailable / ProgressDeadlineExceeded, Available). The kubelet
(fake_kubelet.py) runs one container per pod as `behave()` told for its image or command (default: runs
forever, prints nothing) and restarts it with CrashLoopBackOff (at once, then 10 s doubling to 300 s, reset
after a 10-minute run), with restartCount, state, lastState.terminated and one previous log. /scale,
`kubectl rollout restart`'s annotation, delete and prune by label, and events (aggregated by count, as the
API does) from the kubelet, the scheduler and both controllers. Namespaces and Secrets are stored as applied
(Secrets pruned and deleted with their Deployments' labels). A container's log is read as the kubelet serves
it: the current run, or while it waits to restart the run that just ended; `previous` the one before.

Not modelled: scheduling and nodes (every pod lands on "fake-node" at once); resources, limits and OOM kills
(an OOMKilled exit only when told, as a `reason`); probes (Ready = running); image pulls (instant; failing
only when told, then ErrImagePull and ImagePullBackOff with no retry); shutdown beyond SIGTERM (a deleted
pod's container stops at once, or, told to ignore SIGTERM, is killed after terminationGracePeriodSeconds;
no preStop hooks; a deleted Deployment's pods vanish at once); more than one container per pod, init and
sidecar containers; restartPolicy other than Always; pod phases Succeeded/Failed/Unknown; log lines over
time (a run prints all its lines when it starts); paused rollouts, rollback's revision bump (an old template
re-applied reuses its ReplicaSet), revisionHistoryLimit (old ReplicaSets stay), proportional scaling during
a rollout; readyReplicas counted as progress (the real controller counts it; here only updated, old and
available counts move the deadline); field ownership and conflicts (a later apply drops the restartedAt
annotation), resourceVersion, watches; envFrom and ConfigMaps (a Secret is stored, never resolved into a
container's env, and its content, like a namespace's existence, changes nothing: any namespace name works);
log streams by stream (stdout and stderr are one log, as the pod log API serves them); `sinceTime` to
the microsecond (the real API may round it to the second). Services and StatefulSets: fake_stateful.py.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackblaze.engine.clock import Clock, Handle
from stackblaze.engine.kubernetes.fake_kubelet import Behaviour, FakePod, Kubelet, stamp, stamp_nano
from stackblaze.engine.kubernetes.fake_stateful import FakeStateful
from stackblaze.errors import NotFoundError, UserError

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's "safe" alphabet for generated names


def _safe(data: bytes, length: int) -> str:
    digest = hashlib.sha256(data).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def template_hash(template: dict[str, Any]) -> str:
    """The pod-template-hash label: equal templates hash equal, so re-applying the same spec rolls nothing."""
    return _safe(json.dumps(template, sort_keys=True).encode(), 10)


def _resolve(value: int | str, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    fraction = int(value.rstrip("%")) * replicas / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


@dataclass
class FakeReplicaSet:
    name: str
    hash: str
    template: dict[str, Any]
    revision: int
    replicas: int = 0
    pods: list[FakePod] = field(default_factory=list)
    terminating: list[FakePod] = field(default_factory=list)  # deleted, their containers not yet stopped


@dataclass
class FakeDeployment:
    name: str
    namespace: str
    manifest: dict[str, Any]
    generation: int = 1
    replica_sets: list[FakeReplicaSet] = field(default_factory=list)
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: tuple[int, int, int] = (0, 0, 0)  # (updated, old, available) when progress was last seen
    deadline: Handle | None = None
    progress_since: float = 0.0  # when Progressing last moved: the progress deadline counts from here

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.manifest["spec"]
        return spec

    def new_set(self) -> FakeReplicaSet | None:
        wanted = template_hash(self.spec["template"])
        return next((rs for rs in self.replica_sets if rs.hash == wanted), None)


class FakeCluster:
    """One fake cluster; a test tells containers how to behave, applies Deployments and advances the clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._behaviours: dict[str, Behaviour] = {}
        self._deployments: dict[tuple[str, str], FakeDeployment] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name): as applied
        self.cron_jobs: dict[tuple[str, str], dict[str, Any]] = {}  # stored as applied: no controller runs them
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}  # PersistentVolumeClaims, as applied (always bound)
        self.access: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name): RBAC, as applied
        self._events: list[dict[str, Any]] = []
        self._suffixes = itertools.count()
        self.kubelet = Kubelet(clock, self._behaviour_of, self._emit, self._sync_all)
        self.stateful = FakeStateful(clock, self.kubelet, self._emit, self._sync_all)
        self._syncing = False

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- what a test does ------------------------------------------------------------------------------

    def behave(self, image_or_command: str, *, exits_after: float | None = None, exit_code: int = 1,
               lines: Sequence[str] = (), reason: str | None = None, pull_error: bool = False,
               ignores_stop: bool = False) -> None:
        """How containers of this image (or this command, joined by spaces) behave from their next start."""
        self._behaviours[image_or_command] = Behaviour(exits_after, exit_code, tuple(lines), reason, pull_error,
                                                       ignores_stop)

    def _behaviour_of(self, pod: FakePod) -> Behaviour:
        command = " ".join(pod.command)
        return self._behaviours.get(command) or self._behaviours.get(pod.image) or Behaviour()

    # -- the API: Deployments --------------------------------------------------------------------------

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or update a Deployment from its manifest; the stored Deployment (with status) comes back.
        A v1 Namespace or Secret is stored as given."""
        if manifest.get("apiVersion") == "v1" and manifest.get("kind") in ("Namespace", "Secret"):
            return self._apply_object(manifest)
        if manifest.get("kind") in ("ServiceAccount", "Role", "RoleBinding"):  # the queue-metrics server's access
            stored = copy.deepcopy(manifest)
            self.access[(stored["kind"], stored["metadata"].get("namespace", "default"), stored["metadata"]["name"])] \
                = stored
            return copy.deepcopy(stored)
        if manifest.get("apiVersion") == "batch/v1" and manifest.get("kind") == "CronJob":
            stored = copy.deepcopy(manifest)
            self.cron_jobs[(stored["metadata"].get("namespace", "default"), stored["metadata"]["name"])] = stored
            return copy.deepcopy(stored)
        if manifest.get("apiVersion") == "v1" and manifest.get("kind") == "PersistentVolumeClaim":
            stored = copy.deepcopy(manifest)
            self.claims[(stored["metadata"].get("namespace", "default"), stored["metadata"]["name"])] = stored
            return copy.deepcopy(stored)
        if manifest.get("apiVersion") == "v1" and manifest.get("kind") == "Service":
            return self.stateful.apply_service(manifest)
        if manifest.get("apiVersion") == "apps/v1" and manifest.get("kind") == "StatefulSet":
            return self.stateful.apply_stateful_set(manifest)
        name, namespace = self._name_of(manifest)
        applied = copy.deepcopy(manifest)
        spec = applied.setdefault("spec", {})
        self._validate(name, spec)
        current = self._deployments.get((namespace, name))
        spec.setdefault("replicas", current.spec["replicas"] if current else 1)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        spec.setdefault("minReadySeconds", 0)
        spec.setdefault("progressDeadlineSeconds", 600)
        if current is None:
            self._deployments[(namespace, name)] = FakeDeployment(name, namespace, applied)
        elif current.spec != spec or current.manifest.get("metadata") != applied.get("metadata"):
            if current.spec != spec:
                current.generation += 1
            current.manifest = applied
        self._sync_all()
        return self.get(name, namespace)

    def _apply_object(self, manifest: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(manifest)
        metadata = stored.setdefault("metadata", {})
        if stored["kind"] == "Namespace":
            self.namespaces[metadata["name"]] = stored
        else:
            metadata.setdefault("namespace", "default")
            self.secrets[(metadata["namespace"], metadata["name"])] = stored
        return copy.deepcopy(stored)

    def get(self, name: str, namespace: str = "default") -> dict[str, Any]:
        deployment = self._deployment(name, namespace)
        record = copy.deepcopy(deployment.manifest)
        record["metadata"] |= {"namespace": namespace, "generation": deployment.generation}
        record["status"] = self._status(deployment)
        return record

    def deployments(self, namespace: str = "default", selector: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [self.get(d.name, namespace) for (ns, _), d in sorted(self._deployments.items())
                if ns == namespace and _matches(d.manifest.get("metadata", {}).get("labels", {}), selector)]

    def get_scale(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """The /scale subresource, as autoscaling/v1 has it."""
        deployment = self._deployment(name, namespace)
        selector = ",".join(f"{k}={v}" for k, v in sorted(deployment.spec["selector"]["matchLabels"].items()))
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": deployment.spec["replicas"]},
                "status": {"replicas": self._status(deployment)["replicas"], "selector": selector}}

    def set_scale(self, name: str, replicas: int, namespace: str = "default") -> dict[str, Any]:
        deployment = self._deployment(name, namespace)
        if replicas < 0:
            raise UserError(f"Scale {namespace}/{name}: spec.replicas {replicas} must be 0 or more")
        if deployment.spec["replicas"] != replicas:
            deployment.spec["replicas"] = replicas
            deployment.generation += 1
            self._sync_all()
        return self.get_scale(name, namespace)

    def restart(self, name: str, namespace: str = "default", at: str | None = None) -> dict[str, Any]:
        """`kubectl rollout restart`: stamp the pod template (now, or `at`), so its hash changes and the pods roll."""
        deployment = self._deployment(name, namespace)
        metadata = deployment.spec["template"].setdefault("metadata", {})
        metadata.setdefault("annotations", {})[RESTARTED_AT] = at or stamp(self._clock.time())
        deployment.generation += 1
        self._sync_all()
        return self.get(name, namespace)

    def delete(self, name: str, namespace: str = "default") -> None:
        """Delete with foreground-like cascade: the ReplicaSets and their pods go with it."""
        deployment = self._deployment(name, namespace)
        for rs in deployment.replica_sets:
            for pod in rs.pods:
                self.kubelet.kill(pod, lambda: None)
        if deployment.deadline is not None:
            deployment.deadline.cancel()
        del self._deployments[(namespace, name)]

    def delete_object(self, kind: str, name: str, namespace: str = "default") -> bool:
        """Delete a Deployment (as `delete`), a Secret, a Service or a StatefulSet; False when there is none."""
        if kind == "Secret":
            return self.secrets.pop((namespace, name), None) is not None
        if kind == "CronJob":
            return self.cron_jobs.pop((namespace, name), None) is not None
        if kind in ("Service", "StatefulSet"):
            return self.stateful.delete(kind, name, namespace)
        if kind in ("RoleBinding", "Role", "ServiceAccount"):
            return self.access.pop((kind, namespace, name), None) is not None
        if kind != "Deployment":
            raise UserError(f"fake cluster: cannot delete a {kind!r} (a Deployment or a Secret)")
        if (namespace, name) not in self._deployments:
            return False
        self.delete(name, namespace)
        return True

    def prune(self, selector: dict[str, str], keep: Iterable[str], namespace: str = "default") -> list[str]:
        """Delete every Deployment with these labels whose name is not in `keep` (apply --prune): their names.
        The Secrets with these labels not in `keep` go too (prune_objects names both)."""
        return [name.split("/", 1)[1] for name in self.prune_objects(selector, keep, namespace)
                if name.startswith("Deployment/")]

    def prune_objects(self, selector: dict[str, str], keep: Iterable[str], namespace: str = "default") -> list[str]:
        """prune, over Deployments and Secrets: `Deployment/name` and `Secret/name` of each deleted."""
        kept = set(keep)
        gone = [f"Deployment/{record['metadata']['name']}" for record in self.deployments(namespace, selector)
                if record["metadata"]["name"] not in kept]
        gone += [f"Secret/{name}" for (ns, name), secret in sorted(self.secrets.items())
                 if ns == namespace and name not in kept
                 and _matches(secret["metadata"].get("labels", {}), selector)]
        gone += self.stateful.selected(selector, kept, namespace)
        gone += [f"CronJob/{name}" for (ns, name), job in sorted(self.cron_jobs.items())
                 if ns == namespace and name not in kept and _matches(job["metadata"].get("labels", {}), selector)]
        gone += [f"{kind}/{name}" for (kind, ns, name), stored in sorted(self.access.items())
                 if ns == namespace and name not in kept and _matches(stored["metadata"].get("labels", {}), selector)]
        for item in gone:
            kind, name = item.split("/", 1)
            self.delete_object(kind, name, namespace)
        return gone

    # -- the API: ReplicaSets, pods, logs, events ------------------------------------------------------

    def replica_sets(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        deployment = self._deployment(name, namespace)
        return [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                 "metadata": {"name": rs.name, "namespace": namespace,
                              "labels": {**rs.template["metadata"].get("labels", {}), "pod-template-hash": rs.hash},
                              "annotations": {"deployment.kubernetes.io/revision": str(rs.revision)},
                              "ownerReferences": [{"kind": "Deployment", "name": name, "controller": True}]},
                 "spec": {"replicas": rs.replicas, "template": copy.deepcopy(rs.template)},
                 "status": {"replicas": len(rs.pods),
                            "readyReplicas": sum(p.ready_since is not None for p in rs.pods),
                            "availableReplicas": self._available(deployment, rs)}}
                for rs in deployment.replica_sets]

    def pods(self, namespace: str = "default", selector: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [pod.record() for pod in self._all_pods(namespace) if _matches(pod.labels, selector)]

    def logs(self, pod: str, namespace: str = "default", *, previous: bool = False, timestamps: bool = False,
             tail_lines: int | None = None, since_time: float | None = None) -> str:
        """The container's log as GET .../pods/{pod}/log returns it: the current run, or the one before; while
        the container waits to restart, the run that ended is still its current log (as the kubelet serves the
        last terminated container). `since_time`: only lines written then or later."""
        found = self.pod(pod, namespace)
        waiting = found.started_at is None and found.last_state and found.previous_log is not None
        lines = found.previous_log if previous or waiting else found.log
        if lines is None:
            raise UserError(f'previous terminated container "{found.container}" in pod "{pod}" not found')
        if since_time is not None:
            lines = [(when, text) for when, text in lines if when >= since_time]
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines else []
        return "".join(f"{stamp_nano(when)} {text}\n" if timestamps else f"{text}\n" for when, text in lines)

    def pod(self, name: str, namespace: str = "default") -> FakePod:
        """One pod (a deleted one too, while its container stops)."""
        found = next((p for p in self._all_pods(namespace) if p.name == name), None)
        if found is None:
            raise NotFoundError(f'pods "{name}" not found in namespace {namespace}')
        return found

    def events(self, namespace: str = "default", *, kind: str | None = None,
               name: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(e) for e in self._events if e["involvedObject"]["namespace"] == namespace
                and (kind is None or e["involvedObject"]["kind"] == kind)
                and (name is None or e["involvedObject"]["name"] == name)]

    # -- the controllers -------------------------------------------------------------------------------

    def _sync_all(self) -> None:
        if self._syncing:  # a change made while syncing is seen by the loop below
            return
        self._syncing = True
        try:
            for _ in range(100):  # each round moves at least one step; a stable cluster stops at once
                before = self._fingerprint()
                for deployment in list(self._deployments.values()):
                    self._sync_deployment(deployment)
                    for rs in deployment.replica_sets:
                        self._sync_replica_set(deployment, rs)
                    self._sync_status(deployment)
                self.stateful.sync()
                if self._fingerprint() == before:
                    return
        finally:
            self._syncing = False

    def _fingerprint(self) -> list[tuple[str, int, int]]:
        return [(rs.name, rs.replicas, len(rs.pods) + len(rs.terminating)) for d in self._deployments.values()
                for rs in d.replica_sets] + self.stateful.fingerprint()

    def _sync_deployment(self, deployment: FakeDeployment) -> None:
        spec, new = deployment.spec, deployment.new_set()
        if new is None:
            template = copy.deepcopy(spec["template"])
            hashed = template_hash(template)
            revision = max((rs.revision for rs in deployment.replica_sets), default=0) + 1
            new = FakeReplicaSet(f"{deployment.name}-{hashed}", hashed, template, revision)
            deployment.replica_sets.append(new)
            self._progressing(deployment, "ReplicaSetUpdated", f'ReplicaSet "{new.name}" is progressing.')
        old = [rs for rs in deployment.replica_sets if rs is not new]
        replicas = spec["replicas"]
        if spec["strategy"].get("type") == "Recreate":
            for rs in old:
                self._scale(deployment, rs, 0)
            if not any(rs.pods or rs.terminating for rs in old):  # new pods only once every old one has stopped
                self._scale(deployment, new, replicas)
            return
        if not any(rs.replicas for rs in old) or new.replicas > replicas:
            self._scale(deployment, new, replicas)
            if not any(rs.replicas for rs in old):
                return
        surge, unavailable = self._limits(deployment)
        total = sum(rs.replicas for rs in deployment.replica_sets)
        if new.replicas < replicas and total < replicas + surge:
            self._scale(deployment, new, min(replicas, new.replicas + replicas + surge - total))
            return  # as the real controller: scale down in the next pass, once the new pods exist
        min_available = replicas - unavailable
        # An old pod that is not available counts for nothing: it goes first, within what the budget allows.
        new_unavailable = new.replicas - self._available(deployment, new)
        budget = sum(rs.replicas for rs in deployment.replica_sets) - min_available - new_unavailable
        for rs in old:
            if budget <= 0:
                break
            unhealthy = min(budget, rs.replicas - self._available(deployment, rs))
            if unhealthy > 0:
                self._scale(deployment, rs, rs.replicas - unhealthy)
                budget -= unhealthy
        available = sum(self._available(deployment, rs) for rs in deployment.replica_sets)
        excess = available - min_available
        for rs in old:
            if excess <= 0:
                break
            step = min(rs.replicas, excess)
            if step > 0:
                self._scale(deployment, rs, rs.replicas - step)
                excess -= step

    def _limits(self, deployment: FakeDeployment) -> tuple[int, int]:
        rolling = deployment.spec["strategy"].get("rollingUpdate", {})
        replicas = deployment.spec["replicas"]
        surge = _resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = _resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:  # as the API server's defaulting: a rollout must be able to move
            unavailable = 1
        return surge, unavailable

    def _scale(self, deployment: FakeDeployment, rs: FakeReplicaSet, replicas: int) -> None:
        if rs.replicas == replicas:
            return
        verb = "up" if replicas > rs.replicas else "down"
        self._emit({"kind": "Deployment", "name": deployment.name, "namespace": deployment.namespace}, "Normal",
                   "ScalingReplicaSet", f"Scaled {verb} replica set {rs.name} from {rs.replicas} to {replicas}",
                   "deployment-controller")
        rs.replicas = replicas

    def _sync_replica_set(self, deployment: FakeDeployment, rs: FakeReplicaSet) -> None:
        involved = {"kind": "ReplicaSet", "name": rs.name, "namespace": deployment.namespace}
        while len(rs.pods) < rs.replicas:
            labels = {**rs.template.get("metadata", {}).get("labels", {}), "pod-template-hash": rs.hash}
            suffix = _safe(f"{rs.name}/{next(self._suffixes)}".encode(), 5)
            pod = FakePod(f"{rs.name}-{suffix}", deployment.namespace, labels, rs.name, rs.template,
                          self._clock.time())
            rs.pods.append(pod)
            self._emit(involved, "Normal", "SuccessfulCreate", f"Created pod: {pod.name}", "replicaset-controller")
            self.kubelet.admit(pod)
        while len(rs.pods) > rs.replicas:
            # As the ReplicaSet controller ranks them: not-ready pods go first, then the youngest.
            victim = min(rs.pods, key=lambda p: (p.ready_since is not None, -p.created_at))
            rs.pods.remove(victim)
            rs.terminating.append(victim)
            self.kubelet.kill(victim, functools.partial(self._gone, rs, victim))
            self._emit(involved, "Normal", "SuccessfulDelete", f"Deleted pod: {victim.name}",
                       "replicaset-controller")

    def _gone(self, rs: FakeReplicaSet, pod: FakePod) -> None:
        if pod in rs.terminating:
            rs.terminating.remove(pod)
            self._sync_all()

    def _available(self, deployment: FakeDeployment, rs: FakeReplicaSet) -> int:
        now, min_ready = self._clock.time(), deployment.spec["minReadySeconds"]
        count = 0
        for pod in rs.pods:
            if pod.available(now, min_ready):
                count += 1
            elif pod.ready_since is not None and pod.watched != pod.ready_since:
                pod.watched = pod.ready_since  # look again, once, when it has been Ready long enough
                self._watch(pod, pod.ready_since + min_ready)
        return count

    def _watch(self, pod: FakePod, when: float) -> None:
        def fire() -> None:
            pod.timers.remove(handle)
            self._sync_all()

        handle = self._clock.call_at(when, fire)
        pod.timers.append(handle)

    def _status(self, deployment: FakeDeployment) -> dict[str, Any]:
        new = deployment.new_set()
        pods = [pod for rs in deployment.replica_sets for pod in rs.pods]
        updated = len(new.pods) if new else 0
        available = sum(self._available(deployment, rs) for rs in deployment.replica_sets)
        return {"observedGeneration": deployment.generation, "replicas": len(pods), "updatedReplicas": updated,
                "readyReplicas": sum(p.ready_since is not None for p in pods), "availableReplicas": available,
                "unavailableReplicas": max(0, len(pods) - available),
                "conditions": [copy.deepcopy(c) for c in deployment.conditions.values()]}

    def _sync_status(self, deployment: FakeDeployment) -> None:
        status = self._status(deployment)
        replicas, new = deployment.spec["replicas"], deployment.new_set()
        _, unavailable = self._limits(deployment)
        minimum = status["availableReplicas"] >= replicas - unavailable
        self._condition(deployment, "Available", minimum,
                        "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
                        "Deployment has minimum availability." if minimum
                        else "Deployment does not have minimum availability.")
        assert new is not None
        counts = (status["updatedReplicas"], status["replicas"] - status["updatedReplicas"],
                  status["availableReplicas"])
        complete = counts == (replicas, 0, replicas)
        progressed = counts[0] > deployment.counts[0] or counts[1] < deployment.counts[1] \
            or counts[2] > deployment.counts[2]
        deployment.counts = counts
        current = deployment.conditions.get("Progressing", {})
        if current.get("reason") == "NewReplicaSetAvailable" and counts[1] == 0 and not complete \
                and status["replicas"] == replicas:
            return  # as the real controller: no rollout under way, so a crash or a scale estimates no progress
        if complete:
            if current.get("reason") != "NewReplicaSetAvailable":
                self._progressing(deployment, "NewReplicaSetAvailable",
                                  f'ReplicaSet "{new.name}" has successfully progressed.')
        elif progressed or current.get("reason") == "NewReplicaSetAvailable":
            self._progressing(deployment, "ReplicaSetUpdated", f'ReplicaSet "{new.name}" is progressing.')
        elif current.get("reason") == "ReplicaSetUpdated" and \
                self._clock.time() >= deployment.progress_since + deployment.spec["progressDeadlineSeconds"]:
            self._progressing(deployment, "ProgressDeadlineExceeded", f'ReplicaSet "{new.name}" has timed out '
                                                                      "progressing.")

    def _progressing(self, deployment: FakeDeployment, reason: str, message: str) -> None:
        ok = reason != "ProgressDeadlineExceeded"
        self._condition(deployment, "Progressing", ok, reason, message)
        deployment.progress_since = now = self._clock.time()
        if deployment.deadline is not None:
            deployment.deadline.cancel()
            deployment.deadline = None
        if reason == "ReplicaSetUpdated":  # no progress by then and the rollout has timed out
            deadline = now + deployment.spec["progressDeadlineSeconds"]
            deployment.deadline = self._clock.call_at(deadline, self._sync_all)

    def _condition(self, deployment: FakeDeployment, type_: str, ok: bool, reason: str, message: str) -> None:
        now = stamp(self._clock.time())
        current = deployment.conditions.get(type_)
        status = "True" if ok else "False"
        if current is not None and current["reason"] == reason and current["status"] == status:
            return
        changed = current is None or current["status"] != status
        deployment.conditions[type_] = {
            "type": type_, "status": status, "reason": reason, "message": message, "lastUpdateTime": now,
            "lastTransitionTime": now if changed or current is None else current["lastTransitionTime"]}

    # -- plumbing --------------------------------------------------------------------------------------

    def _emit(self, involved: dict[str, Any], type_: str, reason: str, message: str, component: str) -> None:
        now = stamp(self._clock.time())
        for event in reversed(self._events):  # the API aggregates a repeat into one event with a count
            if event["involvedObject"] == involved and event["reason"] == reason and event["message"] == message:
                event["count"] += 1
                event["lastTimestamp"] = now
                return
        self._events.append({"type": type_, "reason": reason, "message": message, "involvedObject": dict(involved),
                             "source": {"component": component}, "count": 1, "firstTimestamp": now,
                             "lastTimestamp": now})

    def _deployment(self, name: str, namespace: str) -> FakeDeployment:
        deployment = self._deployments.get((namespace, name))
        if deployment is None:
            raise NotFoundError(f'deployments.apps "{name}" not found in namespace {namespace}')
        return deployment

    def _all_pods(self, namespace: str) -> list[FakePod]:
        return [pod for (ns, _), d in self._deployments.items() if ns == namespace
                for rs in d.replica_sets for pod in [*rs.pods, *rs.terminating]] + self.stateful.pods(namespace)

    @staticmethod
    def _name_of(manifest: dict[str, Any]) -> tuple[str, str]:
        if manifest.get("kind") != "Deployment" or manifest.get("apiVersion") != "apps/v1":
            raise UserError(f"fake cluster: kind {manifest.get('kind')!r} of {manifest.get('apiVersion')!r} is "
                            "not served here (apply an apps/v1 Deployment)")
        metadata = manifest.get("metadata", {})
        return metadata["name"], metadata.get("namespace", "default")

    @staticmethod
    def _validate(name: str, spec: dict[str, Any]) -> None:
        selector = spec.get("selector", {}).get("matchLabels", {})
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            raise UserError(f"Deployment {name}: spec.selector {selector} does not match spec.template.metadata"
                            f".labels {labels} (the selector's labels must all be on the template)")
        if len(spec["template"].get("spec", {}).get("containers", [])) != 1:
            raise UserError(f"Deployment {name}: spec.template.spec.containers must hold exactly one container "
                            "in the fake cluster")


def _matches(labels: dict[str, str], selector: dict[str, str] | None) -> bool:
    return selector is None or all(labels.get(k) == v for k, v in selector.items())
