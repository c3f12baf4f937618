"""The Kubernetes engine: each service a Deployment on a cluster (or the fake), behind the same Engine protocol
as the local supervisor.

`reconcile` applies (server-side) the Namespace, Secret and Deployment a Desired says, scales through /scale
and restarts through the pod template's restartedAt; a redis or postgres service is a Service and a StatefulSet
(backing_services.py), which the workers reach through hostAliases. Everything it reports comes from a poll
loop's snapshot of each service's Deployment, ReplicaSets and pods: `status` (ps), rollouts, exit events, the
cluster's own Events, and the pod logs it pumps into the CRI files (observe.py takes each look; logpump.py pumps).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackblaze.engine.clock import Clock, Handle, ScaledClock, SystemClock
from stackblaze.engine.kubernetes.api import RESTARTED_AT, ClusterApi, Manifest
from stackblaze.engine.kubernetes.autoscaled import AutoscaledWorkers
from stackblaze.engine.kubernetes.backing import with_host_aliases, with_job_host_aliases
from stackblaze.engine.kubernetes.backing_services import BackingServices
from stackblaze.engine.kubernetes.disks import claim_for
from stackblaze.engine.kubernetes.events import EventImporter
from stackblaze.engine.kubernetes.logpump import ReplicaNumbers
from stackblaze.engine.kubernetes.manifests import (
    MANAGER,
    REPLICAS_ANNOTATION,
    deployment_for,
    namespace_manifest,
    object_name,
    secret_for,
    secret_name,
)
from stackblaze.engine.kubernetes.observe import Observed, Observer
from stackblaze.engine.kubernetes.rollouts import (
    ClusterRollout,
    complete,
    counts,
    deadline_exceeded,
    early_failure,
    new_hash,
)
from stackblaze.engine.kubernetes.running import ClusterLogs, KubernetesRunning
from stackblaze.engine.kubernetes.status import exit_of, release_of, replica_status
from stackblaze.engine.kubernetes.walltime import WallTime, stamp
from stackblaze.engine.protocol import Desired, EngineHooks, ReplicaStatus, RolloutRecord, RolloutView
from stackblaze.engine.rollouts import wait_settled
from stackblaze.errors import StackblazeError
from stackblaze.settings import Settings
from stackblaze.spec.model import BACKING_TYPES
from stackblaze.spec.targets import Target, split_key

log = logging.getLogger(__name__)


@dataclass
class _Applied:
    manifest: Manifest  # deployment_for's output, as last applied
    config: str


class KubernetesEngine:
    def __init__(self, api: ClusterApi, target: Target, hooks: EngineHooks, clock: Clock, logs_dir: Path, *,
                 poll: float = 2.0) -> None:
        self._api = api
        self._target = target
        self._hooks = hooks
        self._clock = clock
        self._time = WallTime(clock)  # what users read is on the real clock
        self._logs_dir = logs_dir
        self._poll = poll  # seconds of `clock` between looks at the cluster
        self._observer = Observer(api, hooks, self._time, logs_dir)
        self._services: dict[tuple[str, str], Observed] = {}
        self._applied: dict[tuple[str, str], _Applied] = {}
        self._namespaces: set[str] = set()
        self._rollouts: dict[tuple[str, str], ClusterRollout] = {}
        self._stable: dict[tuple[str, str], int] = {}  # the release last rolled out complete
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._sync_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._events = EventImporter(hooks.record_event, self._time.wall)
        self._backing = BackingServices(api, hooks, self._reconcile_later)
        self._autoscaled = AutoscaledWorkers(api, target, self._backing)  # KEDA objects (kubernetes/keda.py)
        self._timer: Handle | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._started = False
        self._closed = False

    # -- the poll loop ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """The first look at the cluster (what is there already is not news: no events for it), then a look
        every `poll` seconds."""
        await self.sync()
        self._started = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._closed:
            self._timer = self._clock.call_at(self._clock.time() + self._poll, self._tick)

    def _tick(self) -> None:
        task = self._later(self.sync())
        task.add_done_callback(lambda _: self._schedule())

    def _reconcile_later(self, project: str, service: str) -> None:
        self._later(self.reconcile(project, service))

    def _later(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        pending = [t for entry in self._services.values() for t in entry.tasks.values()] + list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def sync(self) -> None:
        """One look at every service of this target: snapshot, exits, logs, rollouts, events."""
        async with self._sync_lock:
            try:
                await self._sync(baseline=not self._started)
            except (StackblazeError, OSError) as exc:
                log.warning("cannot read the cluster of target %s: %s", self._target.name, exc)
        async with self._changed:
            self._changed.notify_all()

    def _mine(self) -> set[tuple[str, str]]:
        return {(key, service) for key, service in self._hooks.services() if split_key(key)[1] == self._target.name}

    async def _sync(self, *, baseline: bool) -> None:
        wanted = self._mine()
        by_namespace: dict[str, list[Observed]] = {}
        for key in sorted(wanted | set(self._services)):
            entry = self._entry(*key)
            await self._observer.look(entry, baseline=baseline)
            await self._check_rollout(entry)
            by_namespace.setdefault(entry.namespace, []).append(entry)
            if key not in wanted and entry.deployment is None and not entry.pods:
                self._drop(entry)
        for namespace, entries in by_namespace.items():
            self._events.take(await self._api.events(namespace),
                              {name: (e.key, e.service, replica) for e in entries for name, replica in e.names.items()},
                              baseline=baseline)
        await self._backing.check()

    def _entry(self, key: str, service: str) -> Observed:
        entry = self._services.get((key, service))
        if entry is None:
            app = split_key(key)[0]
            entry = Observed(key, service, app, self._target.namespace or app,
                             ReplicaNumbers(self._logs_dir / key / service))
            self._services[(key, service)] = entry
        return entry

    def _drop(self, entry: Observed) -> None:
        for task in entry.tasks.values():
            task.cancel()
        self._services.pop((entry.key, entry.service), None)

    # -- rollouts --------------------------------------------------------------------------------------

    async def _check_rollout(self, entry: Observed) -> None:
        rollout = self._rollouts.get((entry.key, entry.service))
        deployment = entry.deployment
        if rollout is None or rollout.done or deployment is None:
            return
        new = new_hash(deployment, entry.replica_sets)
        failure = early_failure(entry.pods, new, rollout.min_ready)
        if failure is not None:
            await self._fail(rollout, entry, failure)
        elif deadline_exceeded(deployment, rollout.generation):
            figures = self._counts(entry)
            await self._fail(rollout, entry, None, reason=(
                f"not finished within its progress_deadline ({deployment['spec'].get('progressDeadlineSeconds')}s): "
                f"{figures['new_available']}/{figures['replicas']} new replicas available"))
        elif complete(deployment, rollout.generation):
            now = self._time.now()
            rollout.finish("complete", now)
            self._stable[(entry.key, entry.service)] = rollout.release
            replicas = deployment["spec"].get("replicas", 0)
            self._hooks.record_event(
                project=entry.key, service=entry.service, kind="rollout-complete",
                message=f"{entry.service}: release {rollout.release} rolled out, {replicas}/{replicas} available "
                        f"after {now - rollout.started_at:.1f}s",
                details={"release": rollout.release, "from_release": rollout.from_release,
                         "seconds": round(now - rollout.started_at, 3)})

    async def _fail(self, rollout: ClusterRollout, entry: Observed, failure: dict[str, Any] | None, *,
                    reason: str = "") -> None:
        replica = None
        if failure is not None:
            pod = failure["pod"]
            name = pod["metadata"]["name"]
            replica = entry.numbers.numbers.get(name)
            label = f"{entry.service}.{replica}"
            if "terminated" in failure:
                exit_details = exit_of(failure["terminated"], release=release_of(pod), pod=name, wall=self._time.wall)
                rollout.exit = {**exit_details, "pod": name,
                                "last_lines": await self._observer.previous_lines(name, entry.namespace)}
                reason = (f"{label} {exit_details['meaning']} after {exit_details['ran_for']:.1f}s, before it was "
                          f"available (min_ready {rollout.min_ready:g}s)")
            else:
                waiting = failure["waiting"]
                reason = f"{label} cannot pull its image ({waiting.get('reason')}: {waiting.get('message', '')})"
        rollout.finish("failed", self._time.now())
        rollout.reason = reason
        if rollout.from_release is not None:
            # The control plane points the service at the old release; re-applying it rolls the Deployment back.
            rollout.restored = True
            self._hooks.rollout_failed(rollout)
            self._later(self.reconcile(entry.key, entry.service))
            kept = f"release {rollout.from_release} " + (
                "started again" if rollout.strategy == "recreate" else "kept running")
        else:
            kept = "no earlier release to keep: the new replicas stay under the restart policy"
        lines = (rollout.exit or {}).get("last_lines") or []
        self._hooks.record_event(
            project=entry.key, service=entry.service, replica=replica, kind="rollout-failed",
            message=f"{entry.service}: release {rollout.release} failed to roll out: {reason}; {kept}",
            details={"release": rollout.release, "from_release": rollout.from_release, "reason": reason,
                     "restored": rollout.restored, "exit": rollout.exit, "last_lines": lines})

    def _counts(self, entry: Observed) -> dict[str, int]:
        new = new_hash(entry.deployment, entry.replica_sets) if entry.deployment else None
        return counts(entry.deployment, entry.pods, new, entry.replica_sets)

    def rollout(self, project: str, service: str) -> ClusterRollout | None:
        return self._rollouts.get((project, service))

    def rollout_record(self, rollout: ClusterRollout) -> RolloutRecord:
        entry = self._services.get((rollout.project, rollout.service))
        return rollout.record(self._counts(entry) if entry else counts(None, [], None, []))

    async def wait_rollout(self, rollout: RolloutView, *, on_change: Callable[[RolloutRecord], None],
                           timeout: float | None = None) -> RolloutRecord:
        assert isinstance(rollout, ClusterRollout), "a rollout of another engine"
        return await wait_settled(self._changed, rollout, self.rollout_record, on_change, timeout)

    # -- reconcile -------------------------------------------------------------------------------------

    async def reconcile(self, project: str, service: str, *, fresh: bool = False) -> None:
        async with self._locks.setdefault((project, service), asyncio.Lock()):
            await self._reconcile(project, service)
        await self.sync()

    async def _reconcile(self, key: str, service: str) -> None:
        app = split_key(key)[0]
        namespace = self._target.namespace or app
        name = object_name(app, service)
        desired = self._hooks.desired(key, service)
        if desired is None:
            # As `kubectl apply --prune`: by label, every Deployment, Secret, Service and StatefulSet of this
            # project that no service of it names any more (this one, and any a lost daemon left behind). Never
            # a volume claim: a removed redis or postgres service's data stays until its PVC is deleted.
            self._backing.forget(key, service)  # first: a sync must not apply again what is being removed
            others = self._others(key, service)
            keep = {each for other in others
                    for each in (object_name(app, other.service), secret_name(app, other.service))}
            keep |= self._autoscaled.keep(app, others)
            await self._api.prune({"app.kubernetes.io/part-of": app, "app.kubernetes.io/managed-by": MANAGER},
                                  keep, namespace)
            await self._autoscaled.removed(key, service, others)
            self._applied.pop((key, service), None)
            self._stable.pop((key, service), None)
            rollout = self._rollouts.pop((key, service), None)
            if rollout is not None and not rollout.done:
                rollout.finish("failed", self._time.now())
                rollout.reason = "the service was removed before it finished"
            return
        if self._target.namespace is None and namespace not in self._namespaces:
            await self._api.apply(namespace_manifest(app))  # one per project, as render k8s makes it
            self._namespaces.add(namespace)
        if desired.kind in BACKING_TYPES:
            await self._backing.apply(desired)
            return
        if desired.kind == "cron":  # a CronJob: the cluster's controller runs the ticks (kubernetes/cronjob.py)
            from stackblaze.engine.kubernetes.cronjob import cronjob_for

            secret = secret_for(desired)
            if secret is not None:
                await self._api.apply(secret)
            if desired.disk is not None:
                await self._api.apply(claim_for(desired))
            # Its runs reach the project's backing services by the same <name>.internal names as its workers.
            await self._api.apply(with_job_host_aliases(cronjob_for(desired), await self._backing.aliases(desired)))
            return
        manifest = with_host_aliases(deployment_for(desired), await self._backing.aliases(desired))
        last = self._applied.get((key, service))
        if last is not None and _without_replicas(last.manifest) == _without_replicas(manifest):
            # An autoscaled worker's count is KEDA's: a manual scale becomes its paused-replicas (below).
            if desired.autoscale is None and last.manifest["spec"].get("replicas") != desired.replicas:
                await self._api.scale(name, namespace, desired.replicas)  # /scale: the template is untouched
            elif last.config != desired.config:  # `restart`: new processes, nothing else new
                applied = await self._api.restart(name, namespace, stamp(self._clock.time()).split(".")[0] + "Z")
                self._start_rollout(desired, applied)
            self._applied[(key, service)] = _Applied(manifest, desired.config)
            await self._autoscaled.apply(desired, self._others(key, service))
            return
        if desired.disk is not None:  # the claim first: a pod that mounts a missing one stays Pending
            await self._api.apply(claim_for(desired))
        secret = secret_for(desired)
        if secret is not None:
            await self._api.apply(secret)
        elif last is None or last.manifest["spec"]["template"]["spec"]["containers"][0].get("envFrom"):
            await self._api.delete("Secret", secret_name(app, service), namespace)
        before = await self._api.deployment(name, namespace)
        restarted = ((before or {}).get("spec", {}).get("template", {}).get("metadata", {})
                     .get("annotations", {}).get(RESTARTED_AT))
        sent = manifest
        if restarted:  # keep a past `restart`'s stamp: dropping it would change the template and roll the pods
            sent = _with_template_annotation(manifest, RESTARTED_AT, restarted)
        if before is not None and _scaled_by_another(before) and (
                before["metadata"].get("annotations", {}).get(REPLICAS_ANNOTATION) == str(desired.replicas)):
            # `kubectl scale` (or an autoscaler) owns the count, and ours has not changed since we last set it:
            # the kept-scale rule keeps theirs, as `kubectl apply` of an unchanged manifest keeps a scaled
            # Deployment. Leaving `replicas` out leaves it to them (force would take it back).
            sent = {**sent, "spec": {k: v for k, v in sent["spec"].items() if k != "replicas"}}
        applied = await self._api.apply(sent)
        self._applied[(key, service)] = _Applied(manifest, desired.config)
        if before is None or before["spec"].get("template") != applied["spec"].get("template"):
            if before is not None and (key, service) not in self._stable and complete(
                    before, int(before.get("metadata", {}).get("generation", 0))):
                release = _template_release(before)
                if release is not None:
                    self._stable[(key, service)] = release
            self._start_rollout(desired, applied)
        # After the Deployment it scales (and its rollout, which a cluster without KEDA must not lose).
        await self._autoscaled.apply(desired, self._others(key, service))

    def _others(self, key: str, service: str) -> list[Desired]:
        """The Desired of every other service of the project `key` on this target."""
        found = [self._hooks.desired(key, other) for project, other in self._hooks.services()
                 if project == key and other != service]
        return [desired for desired in found if desired is not None]

    def _start_rollout(self, desired: Any, applied: Manifest) -> None:
        key = (desired.project, desired.service)
        latest = self._rollouts.get(key)
        if latest is not None and latest.state == "failed" and latest.restored \
                and desired.release == latest.from_release:
            return  # the old release re-applied after a failure: the failed rollout stays the service's latest
        if latest is not None and not latest.done:
            latest.reason = f"superseded by release {desired.release} before it finished"
            latest.finish("failed", self._time.now())
        self._rollouts[key] = ClusterRollout(
            project=desired.project, service=desired.service, config=desired.config, release=desired.release,
            strategy=desired.strategy, started_at=self._time.now(), from_release=self._stable.get(key),
            generation=int(applied.get("metadata", {}).get("generation", 0)),
            min_ready=float(applied["spec"].get("minReadySeconds", 0)))

    # -- the rest of the protocol ----------------------------------------------------------------------

    def status(self, project: str, service: str | None = None) -> list[ReplicaStatus]:
        now = self._time.now()
        rows = []
        for (key, name), entry in sorted(self._services.items()):
            if key != project or (service is not None and name != service):
                continue
            for pod in entry.pods:
                pod_name = pod["metadata"]["name"]
                replica = entry.numbers.numbers.get(pod_name)
                if replica is None:
                    continue
                rows.append(replica_status(pod, service=name, replica=replica, now=now, wall=self._time.wall,
                                           last_lines=entry.last_lines.get(pod_name, [])))
        return sorted(rows, key=lambda r: (r["service"], r["replica"]))

    async def wait_stopped(self, project: str, service: str | None = None, timeout: float = 660.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: not self.status(project, service)), timeout=timeout)

    def forget(self, project: str, service: str | None = None) -> None:
        for (key, name), entry in list(self._services.items()):
            if key == project and (service is None or name == service):
                self._drop(entry)
                self._backing.forget(key, name)
                self._rollouts.pop((key, name), None)
                self._applied.pop((key, name), None)
                self._stable.pop((key, name), None)
                self._autoscaled.forget(key, name)

    @property
    def logs(self) -> ClusterLogs:
        return ClusterLogs(self._logs_dir, self.pod_of, self._api)

    def pod_of(self, project: str, service: str, replica: int) -> tuple[str, str] | None:
        """The pod (and its namespace) that holds this replica number now."""
        entry = self._services.get((project, service))
        if entry is None:
            return None
        for pod, number in entry.numbers.numbers.items():
            if number == replica:
                return pod, entry.namespace
        return None

    def services(self) -> list[tuple[str, str]]:
        """This target's services, as the control plane lists them."""
        return sorted(self._mine())


def _scaled_by_another(deployment: Manifest) -> bool:
    """Whether a field manager other than ours owns spec.replicas (kubectl scale, an HPA, KEDA)."""
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("manager") != MANAGER and "f:replicas" in fields:
            return True
    return False


def _without_replicas(manifest: Manifest) -> Manifest:
    return {**manifest, "spec": {k: v for k, v in manifest["spec"].items() if k != "replicas"},
            "metadata": {k: v for k, v in manifest["metadata"].items() if k != "annotations"}}


def _with_template_annotation(manifest: Manifest, key: str, value: str) -> Manifest:
    template = manifest["spec"]["template"]
    metadata = {**template["metadata"], "annotations": {**template["metadata"].get("annotations", {}), key: value}}
    return {**manifest, "spec": {**manifest["spec"], "template": {**template, "metadata": metadata}}}


def _template_release(deployment: Manifest) -> int | None:
    return release_of({"metadata": deployment.get("spec", {}).get("template", {}).get("metadata", {})})


async def open_kubernetes(settings: Settings, target: Target, hooks: EngineHooks) -> KubernetesRunning:
    """The engine of one kubernetes (or fake) target, started: its first look at the cluster is done."""
    clock: Clock
    api: ClusterApi
    if target.kind == "fake":
        from stackblaze.engine.kubernetes.fake_api import FakeApi, fake_from_target

        clock = ScaledClock(settings.time_scale)
        poll = 0.1 / settings.time_scale  # a tenth of a real second, in the fake cluster's seconds
        api = FakeApi(fake_from_target(target, clock), follow_poll=poll)
    elif target.kind == "kubernetes":
        from stackblaze.engine.kubernetes.client import KubeClient  # the one module that imports `kubernetes`

        clock, poll = SystemClock(), 2.0
        api = KubeClient(context=target.context)
    else:
        raise StackblazeError(f"target {target.name}: kind {target.kind!r} is not a cluster (kubernetes or fake)")
    engine = KubernetesEngine(api, target, hooks, clock, settings.logs_dir, poll=poll)
    await engine.start()
    # As the local engine does at start: every stored service is applied. On a cluster that kept them this
    # changes nothing (the same template, server-side applied); a fake cluster starts empty with the daemon.
    for project, service in hooks.services():
        try:
            await engine.reconcile(project, service)
        except StackblazeError as exc:
            log.error("target %s: %s/%s not applied: %s", target.name, project, service, exc)
    return KubernetesRunning(engine, api, target)
