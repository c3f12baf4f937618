"""One look at one service on a cluster: its Deployment, ReplicaSets and pods, the exits each pod's lastState
shows (recorded once, with the run's last lines), and the log pumps that copy each pod's runs into its
replica's CRI file.

The engine keeps an `Observed` per service and decides rollouts from it; `Observer.look` refreshes one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackblaze.engine.kubernetes.api import ClusterApi, Manifest
from stackblaze.engine.kubernetes.logpump import LogFile, PodPump, ReplicaNumbers
from stackblaze.engine.kubernetes.manifests import object_name, selector_labels
from stackblaze.engine.kubernetes.status import back_off, container_status, exit_of, release_of, seconds
from stackblaze.engine.kubernetes.walltime import WallTime
from stackblaze.engine.protocol import EngineHooks
from stackblaze.errors import StackblazeError

LAST_LINES = 20  # lines of a crashed run kept with its exit, as the local engine keeps


@dataclass
class Observed:
    """A service's snapshot as the last look found it, and what is kept across looks."""

    key: str
    service: str
    app: str
    namespace: str
    numbers: ReplicaNumbers
    deployment: Manifest | None = None
    pods: list[Manifest] = field(default_factory=list)
    replica_sets: list[Manifest] = field(default_factory=list)
    pumps: dict[str, PodPump] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    exits: dict[str, str] = field(default_factory=dict)  # pod -> its last exit we know of
    last_lines: dict[str, list[str]] = field(default_factory=dict)  # pod -> its last exit's lines
    names: dict[str, int | None] = field(default_factory=dict)  # every RS and pod seen -> its replica

    @property
    def name(self) -> str:
        return object_name(self.app, self.service)

    @property
    def selector(self) -> dict[str, str]:
        return selector_labels(self.app, self.service)


class Observer:
    def __init__(self, api: ClusterApi, hooks: EngineHooks, time: WallTime, logs_dir: Path) -> None:
        self._api = api
        self._hooks = hooks
        self._time = time
        self._logs_dir = logs_dir

    async def look(self, entry: Observed, *, baseline: bool) -> None:
        """Refresh the snapshot, record the exits it shows and start the log pumps it needs. `baseline`: the
        engine's first look, where an exit of a pod seen for the first time is not news."""
        entry.deployment = await self._api.deployment(entry.name, entry.namespace)
        entry.pods = sorted(await self._api.pods(entry.namespace, entry.selector),
                            key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        entry.replica_sets = await self._api.replica_sets(entry.namespace, entry.selector)
        await self._observe(entry, baseline=baseline)

    async def _observe(self, entry: Observed, *, baseline: bool) -> None:
        numbers = entry.numbers.assign([p["metadata"]["name"] for p in entry.pods])
        for rs in entry.replica_sets:
            entry.names.setdefault(rs["metadata"]["name"], None)
        if entry.deployment is not None:
            entry.names.setdefault(entry.name, None)
        for pod in entry.pods:
            name = pod["metadata"]["name"]
            replica = numbers[name]
            first = name not in entry.names
            entry.names[name] = replica
            status = container_status(pod)
            terminated = (status.get("lastState") or {}).get("terminated")
            if terminated:
                seen = terminated.get("containerID") or f"{terminated.get('startedAt')}/{terminated.get('finishedAt')}"
                if entry.exits.get(name) != seen:
                    entry.exits[name] = seen
                    entry.last_lines[name] = await self.previous_lines(name, entry.namespace)
                    if not (baseline and first):
                        self._record_exit(entry, pod, replica, terminated)
            self._pump(entry, pod, replica)
        live = set(numbers)
        for name in [n for n in entry.pumps if n not in live]:
            task = entry.tasks.get(name)
            if task is None or task.done():
                entry.pumps.pop(name)
                entry.tasks.pop(name, None)
                entry.exits.pop(name, None)
                entry.last_lines.pop(name, None)

    async def previous_lines(self, pod: str, namespace: str, count: int = LAST_LINES) -> list[str]:
        """The last lines of the pod's run that ended (none when the kubelet no longer has it)."""
        try:
            text = await self._api.logs(pod, namespace, previous=True, timestamps=False, tail_lines=count)
        except (StackblazeError, OSError):
            return []
        return text.splitlines()

    def _record_exit(self, entry: Observed, pod: Manifest, replica: int, terminated: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        wall = self._time.wall
        details = {**exit_of(terminated, release=release_of(pod), pod=name, wall=wall),
                   "pod": name, "last_lines": entry.last_lines.get(name, [])}
        label = f"{entry.service}.{replica}"
        self._hooks.record_event(project=entry.key, service=entry.service, replica=replica, kind="exit",
                                 message=f"{label} exited ({details['meaning']}) after {details['ran_for']:.1f}s",
                                 details=details, at=details["at"])
        status = container_status(pod)
        waiting = status.get("state", {}).get("waiting") or {}
        delay = back_off(waiting.get("message")) if waiting.get("reason") == "CrashLoopBackOff" else None
        if delay is None and not status.get("state", {}).get("running"):
            return  # not said yet how long the kubelet waits: the BackOff event will say it
        delay = delay or 0.0
        finished = seconds(terminated.get("finishedAt")) or self._time.clock.time()
        restart_at = wall(finished + delay)
        count = int(status.get("restartCount", 0)) + (0 if status.get("state", {}).get("running") else 1)
        self._hooks.record_event(
            project=entry.key, service=entry.service, replica=replica, kind="restart-scheduled",
            message=f"{label} restarts in {max(0.0, restart_at - self._time.now()):.2f}s (restart #{count})",
            details={"restart_at": restart_at, "delay": wall(finished + delay) - wall(finished),
                     "restart_count": count, "pod": name})

    def _pump(self, entry: Observed, pod: Manifest, replica: int) -> None:
        """Start reading the pod's log where it is not read yet: the run that ended, then the running one."""
        name = pod["metadata"]["name"]
        task = entry.tasks.get(name)
        if task is not None and not task.done():
            return
        pump = entry.pumps.get(name)
        if pump is None or pump.file.path.name != f"{replica}.log":
            desired = self._hooks.desired(entry.key, entry.service)
            file = LogFile(self._logs_dir / entry.key / entry.service / f"{replica}.log",
                           max_bytes=desired.log_max_bytes if desired else 10 << 20,
                           max_files=desired.log_max_files if desired else 5)
            pump = entry.pumps[name] = PodPump(self._api, name, entry.namespace, file,
                                               resume=name in entry.numbers.inherited,
                                               to_local=self._time.to_local, to_cluster=self._time.to_cluster)
        status = container_status(pod)
        runs = int(status.get("restartCount", 0))
        running = bool(status.get("state", {}).get("running"))
        ended = bool((status.get("lastState") or {}).get("terminated"))
        previous = runs - 1 if running else runs  # the run the kubelet's `previous` log holds
        steps: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if ended and previous >= 0 and previous not in pump.pumped:
            steps.append(lambda: pump.catch_up(previous))
        if running and runs not in pump.pumped:
            steps.append(lambda: pump.follow(runs))
        if steps:
            async def work() -> None:
                for step in steps:
                    await step()

            entry.tasks[name] = asyncio.ensure_future(work())
