"""The fake cluster's pods and containers: what the kubelet does with a container that runs, exits and restarts.

One container per pod, `restartPolicy: Always`, the kubelet's CrashLoopBackOff (engine/backoff.py), one previous
log per container. Time comes from the engine's Clock; `on_change` tells the controllers a pod moved.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.clock import Clock, Handle


@dataclass(frozen=True)
class Behaviour:
    """What a container does once started: prints `lines`, then runs forever (exits_after None) or exits."""

    exits_after: float | None = None
    exit_code: int = 1
    lines: tuple[str, ...] = ()
    reason: str | None = None  # the terminated reason the kubelet reports, e.g. "OOMKilled" (when told)
    pull_error: bool = False  # the image cannot be pulled: the container never starts
    ignores_stop: bool = False  # SIGTERM does nothing: the kubelet kills it after the termination grace period


def stamp(when: float) -> str:
    """The API's RFC 3339 time, to the second (as metadata and container states have it)."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp_nano(when: float) -> str:
    """The kubelet's log timestamp (RFC 3339 with nanoseconds), as `logs?timestamps=true` prefixes each line."""
    moment = datetime.fromtimestamp(when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


Emit = Callable[[dict[str, Any], str, str, str, str], None]  # (pod, type, reason, message, component)


@dataclass
class FakePod:
    name: str
    namespace: str
    labels: dict[str, str]
    owner: str  # the ReplicaSet's name
    template: dict[str, Any]
    created_at: float
    container: str = ""
    image: str = ""
    command: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    started_at: float | None = None  # the current run's start, None while not running
    ready_since: float | None = None
    streak: int = 0
    log: list[tuple[float, str]] = field(default_factory=list)
    previous_log: list[tuple[float, str]] | None = None
    timers: list[Handle] = field(default_factory=list)
    watched: float | None = None  # the ready_since the controllers already wait on for availability
    deleted_at: float | None = None  # deletionTimestamp: Terminating until the container has stopped
    owner_kind: str = "ReplicaSet"  # or StatefulSet (fake_stateful.py)

    def available(self, now: float, min_ready: float) -> bool:
        return self.ready_since is not None and now - self.ready_since >= min_ready

    def record(self) -> dict[str, Any]:
        ready = self.ready_since is not None
        status = {"name": self.container, "image": self.image, "ready": ready, "started": ready,
                  "restartCount": self.restart_count, "state": copy.deepcopy(self.state)}
        if self.last_state:
            status["lastState"] = copy.deepcopy(self.last_state)
        conditions = [{"type": "PodScheduled", "status": "True"},
                      {"type": "Ready", "status": "True" if ready else "False"},
                      {"type": "ContainersReady", "status": "True" if ready else "False"}]
        metadata = {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels),
                    "creationTimestamp": stamp(self.created_at),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": self.owner_kind, "name": self.owner,
                                         "controller": True}]}
        if self.deleted_at is not None:
            metadata["deletionTimestamp"] = stamp(self.deleted_at)
        return {
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": copy.deepcopy(self.template.get("spec", {})) | {"restartPolicy": "Always"},
            "status": {"phase": "Running" if self.state.get("running") or self.restart_count else "Pending",
                       "conditions": conditions, "containerStatuses": [status]},
        }


class Kubelet:
    """Runs each pod's one container by its Behaviour and restarts it with the kubelet's back-off."""

    def __init__(self, clock: Clock, behaviour_of: Callable[[FakePod], Behaviour], emit: Emit,
                 on_change: Callable[[], None], policy: BackoffPolicy | None = None) -> None:
        self._clock = clock
        self._behaviour_of = behaviour_of
        self._emit = emit
        self._on_change = on_change
        self.policy = policy or BackoffPolicy()

    def _event(self, pod: FakePod, type_: str, reason: str, message: str) -> None:
        self._emit({"kind": "Pod", "name": pod.name, "namespace": pod.namespace}, type_, reason, message,
                   "kubelet")

    def _later(self, pod: FakePod, delay: float, action: Callable[[], None]) -> None:
        def fire() -> None:
            pod.timers.remove(handle)  # so a pod in a crash loop for days holds only its pending timers
            if pod.deleted_at is None:
                action()
                self._on_change()

        handle = self._clock.call_at(self._clock.time() + delay, fire)
        pod.timers.append(handle)

    def admit(self, pod: FakePod) -> None:
        """A new pod: scheduled (nowhere in particular), its image pulled, its container started at once."""
        container = pod.template["spec"]["containers"][0]
        pod.container, pod.image = container["name"], container.get("image", "")
        pod.command = list(container.get("command", [])) + list(container.get("args", []))
        self._emit({"kind": "Pod", "name": pod.name, "namespace": pod.namespace}, "Normal", "Scheduled",
                   f"Successfully assigned {pod.namespace}/{pod.name} to fake-node", "default-scheduler")
        if self._behaviour_of(pod).pull_error:
            pod.state = {"waiting": {"reason": "ErrImagePull",
                                     "message": f'failed to pull image "{pod.image}" (as the test said)'}}
            self._event(pod, "Warning", "Failed", f'Failed to pull image "{pod.image}": as the test said')
            self._later(pod, self.policy.initial, lambda: self._pull_back_off(pod))
            return
        self._event(pod, "Normal", "Pulled", f'Container image "{pod.image}" already present on machine')
        self._start(pod)

    def _pull_back_off(self, pod: FakePod) -> None:
        pod.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{pod.image}"'}}
        self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{pod.image}"')

    def _start(self, pod: FakePod) -> None:
        now = self._clock.time()
        behaviour = self._behaviour_of(pod)
        self._event(pod, "Normal", "Created", f"Created container {pod.container}")
        self._event(pod, "Normal", "Started", f"Started container {pod.container}")
        pod.state = {"running": {"startedAt": stamp(now)}}
        pod.started_at = pod.ready_since = now  # no probes: Ready as soon as it runs
        pod.log = [(now, line) for line in behaviour.lines]
        if behaviour.exits_after is not None:
            self._later(pod, behaviour.exits_after, lambda: self._exit(pod, behaviour))

    def _exit(self, pod: FakePod, behaviour: Behaviour) -> None:
        now = self._clock.time()
        started = pod.started_at if pod.started_at is not None else now
        reason = behaviour.reason or ("Completed" if behaviour.exit_code == 0 else "Error")
        terminated = {"exitCode": behaviour.exit_code, "reason": reason, "startedAt": stamp(started),
                      "finishedAt": stamp(now)}
        pod.last_state = {"terminated": terminated}
        pod.previous_log, pod.log = pod.log, []  # the kubelet keeps exactly one previous log
        pod.started_at = pod.ready_since = None
        pod.streak = self.policy.next_streak(pod.streak, now - started)
        delay = self.policy.delay_for(pod.streak)
        if delay <= 0:
            self._restart(pod)
            return
        message = f"back-off {delay:g}s restarting failed container={pod.container} pod={pod.name}"
        pod.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        self._event(pod, "Warning", "BackOff", f"Back-off restarting failed container {pod.container} "
                                               f"in pod {pod.name}")
        self._later(pod, delay, lambda: self._restart(pod))

    def _restart(self, pod: FakePod) -> None:
        pod.restart_count += 1
        self._event(pod, "Normal", "Pulled", f'Container image "{pod.image}" already present on machine')
        self._start(pod)

    def kill(self, pod: FakePod, on_gone: Callable[[], None]) -> None:
        """The pod is deleted: SIGTERM, and its container stops at once, or (told to ignore it) is killed
        after the pod's terminationGracePeriodSeconds; `on_gone` when it has stopped."""
        now = self._clock.time()
        pod.deleted_at = now
        for handle in pod.timers:
            handle.cancel()
        if pod.started_at is None:  # nothing running (waiting or backing off): gone at once
            on_gone()
            return
        self._event(pod, "Normal", "Killing", f"Stopping container {pod.container}")
        pod.ready_since = None  # a terminating pod is never Ready
        grace = float(pod.template["spec"].get("terminationGracePeriodSeconds", 30))

        def stopped(code: int) -> None:
            pod.state = {"terminated": {"exitCode": code, "reason": "Error", "startedAt": stamp(pod.started_at or now),
                                        "finishedAt": stamp(self._clock.time())}}
            pod.started_at = None
            on_gone()

        if self._behaviour_of(pod).ignores_stop:
            self._clock.call_at(now + grace, lambda: stopped(137))
        else:
            stopped(143)
