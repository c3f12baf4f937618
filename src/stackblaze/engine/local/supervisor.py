"""The local engine's control loop: desired vs actual per replica slot, the restart policy, rollouts.

It owns no process: it asks the runner to spawn and stop, and hears of every exit from it. Timers are
asyncio timers set for the exact restart time; nothing here polls.
"""

from __future__ import annotations

import asyncio
import errno as errnos
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.clock import Clock, SystemClock
from stackblaze.engine.local.isolation import spawn_env, spawn_fields, working_dir
from stackblaze.engine.local.reports import exit_details, exit_words, note_log_drops, report_exit, report_restart
from stackblaze.engine.local.rollout import Rollout, count, is_complete, plan_rolling
from stackblaze.engine.local.runner_client import SpawnFailed
from stackblaze.engine.local.slots import Desired, EventSink, Live, Slot, StatusStore, lives
from stackblaze.engine.local.spawnfail import SHELL_EXIT_CODES
from stackblaze.engine.protocol import RolloutView, replica_numbers
from stackblaze.engine.rollouts import wait_settled
from stackblaze.engine.workdirs import Workdirs
from stackblaze.errors import UnavailableError
from stackblaze.spec.commands import start_argv

log = logging.getLogger(__name__)


RolloutSink = Callable[[Rollout], None]


async def _no_lines(*_: Any) -> list[str]:
    return []


class Runner(Protocol):
    """The runner as the supervisor uses it: RunnerClient (a real process), or FakeRunner (unit tests)."""

    on_exit: Callable[[dict[str, Any]], Awaitable[None]] | None
    on_lost: Callable[[], Awaitable[None]] | None
    on_log_drops: Callable[[dict[str, Any]], Awaitable[None]] | None

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def call(self, op: str, **fields: Any) -> dict[str, Any]: ...


class Supervisor:
    def __init__(
        self, *, runner: Runner, store: StatusStore, policy: BackoffPolicy, logs_dir: Path,
        desired: Callable[[str, str], Desired | None], services: Callable[[], list[tuple[str, str]]],
        record_event: EventSink, clock: Clock | None = None,
        last_lines: Callable[[str, str, int, float], Awaitable[list[str]]] | None = None,
        rollout_failed: RolloutSink = lambda _: None, workdirs: Workdirs | None = None,
    ) -> None:
        self._runner = runner
        self._store = store
        self._policy = policy
        self._logs_dir = logs_dir
        self._desired = desired
        self._services = services
        self._event = record_event
        self._clock = clock or SystemClock()
        self._tasks: set[asyncio.Future[None]] = set()
        # (project, service, replica, since) -> the replica's last log lines (the caller reads files off the loop)
        self._last_lines = last_lines or _no_lines
        self._rollout_failed = rollout_failed  # the control plane puts the service back on the old release
        self._workdirs = workdirs  # None: replicas run in the release directory itself (unit tests' fakes)
        self._slots: dict[tuple[str, str, int], Slot] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._changed = asyncio.Condition()
        # Per service: the latest rollout, and the last config that ran complete (what a failure restores).
        self._rollouts: dict[tuple[str, str], Rollout] = {}
        self._stable: dict[tuple[str, str], Desired] = {}
        # (cpu %, memory bytes) of a replica instance key; the local engine hands in its sampler's figures
        self.usage_of: Callable[[str], tuple[float | None, int | None]] = lambda _: (None, None)
        runner.on_exit = self.handle_exit
        runner.on_lost = self.handle_runner_lost
        runner.on_log_drops = self.handle_log_drops

    # -- start-up: adopt what the runner already runs -------------------------------------------

    async def start(self) -> None:
        known = {p for p, _ in self._services()}
        for project in known:
            for (service, replica), saved in self._store.replica_statuses(project).items():
                slot = self._slot(project, service, replica)
                slot.restart_count = saved.get("restart_count", 0)
                slot.streak = saved.get("streak", 0)
                slot.last_exit = saved.get("last_exit")
                slot.next_restart_at = saved.get("next_restart_at")
                slot.config = saved.get("config")
                slot.restart_pending = saved.get("restart_pending", False)
        listing = await self._runner.call("list")
        if self._workdirs is not None:
            await asyncio.to_thread(self._workdirs.sweep, {record["key"] for record in listing["instances"]})
        exited = []
        strays: list[tuple[Live, Desired | None]] = []
        # Running instances first, so that an exit we missed is matched against the slot's live replica.
        for record in sorted(listing["instances"], key=lambda r: r["state"] == "exited"):
            meta = record.get("meta") or {}
            if meta.get("cron"):
                continue  # a cron run: the scheduler's (engine/local/cron.py), never a replica or a stray
            if meta.get("project") not in known:
                if record["state"] == "exited":
                    await self._runner.call("ack", keys=[record["key"]])
                else:
                    await self._runner.call("stop", key=record["key"], signal=15, grace=self._policy.scale * 30)
                continue
            slot = self._slot(meta["project"], meta["service"], int(meta["replica"]))
            live = Live(record["key"], record["pid"], record["started_at"], meta["release"], meta["config"],
                        stopping=bool(record.get("stop_requested")))
            desired = self._desired(slot.project, slot.service)
            if record["state"] == "exited":
                exited.append(record)  # handled below as a crash if it was the slot's replica
            if live.stopping or (record["state"] == "exited" and slot.current is not None):
                slot.old[live.key] = live
            elif record["state"] == "exited" or slot.current is None:
                slot.current = live
            elif desired and live.config == desired.config and slot.current.config != desired.config \
                    and slot.incoming is None:
                slot.incoming = live  # the daemon died during a rollout: go on with it
            else:
                slot.old[live.key] = live
                strays.append((live, desired))  # two replicas in one slot: keep one
        for live, desired in strays:
            await self._stop(live, desired)
        for slot in self._slots.values():
            if slot.current is None and slot.next_restart_at is not None:
                self._arm(slot, slot.next_restart_at)
        for record in exited:
            await self.handle_exit(record)
        for project, service in self._services():
            await self.reconcile(project, service)

    # -- status ------------------------------------------------------------------------------------

    def status(self, project: str, service: str | None = None) -> list[dict[str, Any]]:
        now = self._clock.time()
        rows = []
        for slot in sorted(self._slots.values(), key=lambda s: (s.service, s.replica)):
            if slot.project != project or (service is not None and slot.service != service):
                continue
            live = slot.current or slot.incoming or next(iter(slot.old.values()), None)
            if slot.current is not None or slot.incoming is not None:
                state = "running"
            elif slot.old:
                state = "stopping"
            elif slot.timer is not None or slot.restart_pending:
                state = "waiting"
            else:
                state = "stopped"
            release = live.release if live else (slot.last_exit or {}).get("release")
            # The last exit of this release's replica: an older release's exits are in `events`.
            last_exit = slot.last_exit if slot.last_exit and slot.last_exit.get("release") == release else None
            cpu, memory = self.usage_of(live.key) if live and state in ("running", "stopping") else (None, None)
            rows.append({
                "service": slot.service, "replica": slot.replica, "state": state, "release": release,
                "crash_loop": state == "waiting" and slot.streak >= 2,
                "pid": live.pid if live else None,
                "started_at": live.started_at if live else None,
                "uptime": now - live.started_at if live else None,
                "restart_count": slot.restart_count, "last_exit": last_exit,
                "next_restart_at": slot.next_restart_at if slot.timer is not None else None,
                "incoming": {"pid": slot.incoming.pid, "release": slot.incoming.release}
                if slot.incoming and slot.current else None,
                "stopping": [{"pid": o.pid, "release": o.release} for o in slot.old.values()],
                "log_lines_dropped": slot.dropped_lines, "log_dropping": slot.dropping,
                "cpu": cpu, "memory": memory,
            })
        return rows

    def shown(self) -> list[tuple[Slot, Live]]:
        """Each slot's process that `ps` shows (current, else incoming, else one stopping): what is sampled."""
        return [(slot, live) for slot in self._slots.values()
                if (live := slot.current or slot.incoming or next(iter(slot.old.values()), None)) is not None]

    def pids(self, project: str, service: str | None = None) -> list[int]:
        return [
            live.pid for slot in self._slots.values()
            if slot.project == project and (service is None or slot.service == service)
            for live in lives(slot)
        ]

    def rollout(self, project: str, service: str) -> Rollout | None:
        """The service's latest rollout (None: none since the daemon started; it runs what it should)."""
        return self._rollouts.get((project, service))

    def rollout_record(self, rollout: Rollout) -> dict[str, Any]:
        return rollout.record(self._counts(rollout))

    async def wait_rollout(self, rollout: RolloutView, *, on_change: Callable[[dict[str, Any]], None],
                           timeout: float | None = None) -> dict[str, Any]:
        """Until the rollout is complete or failed; `on_change` hears each new count on the way."""
        assert isinstance(rollout, Rollout), "a rollout of another engine"
        return await wait_settled(self._changed, rollout, self.rollout_record, on_change, timeout)

    def _counts(self, rollout: Rollout) -> dict[str, int]:
        return count(rollout, self._service_slots(rollout.project, rollout.service),
                     self._desired(rollout.project, rollout.service), now=self._clock.time(), scale=self._policy.scale)

    # -- reconcile ---------------------------------------------------------------------------------

    async def reconcile(self, project: str, service: str, *, fresh: bool = False) -> None:
        """Bring one service to its desired state; `fresh` starts waiting replicas now (a new rollout)."""
        async with self._lock(project, service):
            await self._reconcile(project, service, fresh=fresh)
        async with self._changed:
            self._changed.notify_all()

    async def _reconcile(self, project: str, service: str, *, fresh: bool) -> None:
        desired = self._desired(project, service)
        want = replica_numbers(desired)
        for slot in sorted(self._service_slots(project, service), key=lambda s: -s.replica):
            if slot.replica not in want:  # highest-numbered first
                await self._retire(slot, desired)
        if desired is None:
            rollout = self._rollouts.pop((project, service), None)
            if rollout is not None:
                rollout.finish(rollout.state, self._clock.time())
            self._stable.pop((project, service), None)
            return
        target, rollout = self._target(desired)
        if rollout is not None:
            await self._step(rollout, target, fresh=fresh)
            if rollout.state == "failed":  # the step failed it: back to what ran before
                desired = self._desired(project, service)  # the control plane may have reverted the release
                if desired is None:
                    return
                target, rollout = self._target(desired)
        if rollout is None:
            # A failed rollout with nothing known to restore (its daemon died mid-rollout) keeps the old
            # replicas that still run rather than replacing them with the failing config.
            latest = self._rollouts.get((project, service))
            keep = (latest is not None and latest.state == "failed" and latest.config == target.config
                    and latest.from_config is None)
            await self._converge(target, fresh=fresh, keep_stale=keep)

    def _target(self, desired: Desired) -> tuple[Desired, Rollout | None]:
        """What to run, and the rollout in progress towards it (None: nothing to roll out)."""
        key = (desired.project, desired.service)
        stable, rollout = self._stable.get(key), self._rollouts.get(key)
        if stable is not None and stable.config == desired.config:
            return desired, None
        if rollout is not None and rollout.config == desired.config:
            if rollout.state == "failed" and stable is not None:
                # keep the old release running
                return replace(stable, replicas=desired.replicas, indexes=desired.indexes), None
            return desired, rollout if rollout.state == "progressing" else None
        if rollout is not None and not rollout.done:
            rollout.reason = f"superseded by release {desired.release} before it finished"
            rollout.finish("failed", self._clock.time())
        running = [live for slot in self._service_slots(*key) for live in lives(slot)]
        if stable is None and running and all(live.config == desired.config for live in running) \
                and len(running) == desired.replicas:
            self._stable[key] = desired  # adopted after a daemon restart: it already runs what it should
            return desired, None
        rollout = Rollout(
            project=desired.project, service=desired.service, config=desired.config, release=desired.release,
            strategy=desired.strategy, started_at=self._clock.time(), from_release=stable.release if stable else None,
            from_config=stable.config if stable else None,
        )
        self._rollouts[key] = rollout
        rollout.timers.append(self._clock.call_at(rollout.started_at + desired.progress_deadline * self._policy.scale,
                                                  lambda: self._later(self._deadline(rollout))))
        return desired, rollout

    async def _converge(self, desired: Desired, *, fresh: bool, keep_stale: bool = False) -> None:
        """No rollout to gate: replace stale replicas at once (rolling: new first) and fill empty slots."""
        project, service = desired.project, desired.service
        recreate = desired.strategy == "recreate"
        slots = [self._slot(project, service, n) for n in replica_numbers(desired)]
        for slot in slots:
            if slot.incoming is not None:  # a rollout's replica that is no longer wanted
                await self._stop_live(slot, slot.incoming, desired)
        if recreate and not keep_stale:
            for slot in slots:
                if slot.current is not None and slot.current.config != desired.config:
                    await self._stop_current(slot, desired)
        for slot in slots:
            if fresh and slot.current is None and slot.timer is not None:
                self._disarm(slot)
            if slot.current is not None and slot.current.config != desired.config and not recreate and not keep_stale:
                previous = slot.current
                slot.current = None
                await self._spawn(slot, desired)
                await self._stop_live(slot, previous, desired)
            blocked = recreate and any(s.old for s in self._service_slots(project, service))
            if slot.current is None and slot.timer is None and not blocked:
                await self._spawn(slot, desired)

    async def _step(self, rollout: Rollout, desired: Desired, *, fresh: bool) -> None:
        """One step of a gated rollout: a Deployment's rules, with the processes we can see."""
        project, service = desired.project, desired.service
        slots = [self._slot(project, service, n) for n in replica_numbers(desired)]
        for slot in slots:
            if fresh and slot.current is None and slot.timer is not None:
                self._disarm(slot)
        if desired.strategy == "recreate":
            for slot in slots:
                if slot.current is not None and slot.current.config != desired.config:
                    await self._stop_current(slot, desired)
            if any(live.config != desired.config for s in self._service_slots(project, service)
                   for live in lives(s)):
                return  # every old replica gone first
            for slot in slots:
                if slot.current is None and slot.timer is None and not rollout.done:
                    await self._spawn(slot, desired, rollout=rollout)
        else:
            step = plan_rolling(slots, desired, processes=sum(len(lives(s)) for s in self._service_slots(
                project, service)), now=self._clock.time(), scale=self._policy.scale)
            for slot in step.promote:  # an available new replica replaces the old one of its slot
                previous, slot.current, slot.incoming = slot.current, slot.incoming, None
                slot.restart_count = slot.streak = 0  # the counters count for the new config now
                slot.config = desired.config
                self._save(slot)
                if previous is not None:
                    await self._stop_live(slot, previous, desired)
            for slot in step.retire:
                await self._stop_current(slot, desired)
            for slot in step.start:
                if not rollout.done:
                    await self._spawn(slot, desired, rollout=rollout)
            for slot in step.surge:
                if not rollout.done:
                    await self._spawn(slot, desired, rollout=rollout, incoming=True)
        if not rollout.done:
            self._check_complete(rollout, desired, slots)

    def _check_complete(self, rollout: Rollout, desired: Desired, slots: list[Slot]) -> None:
        now = self._clock.time()
        if not is_complete(slots, self._service_slots(desired.project, desired.service), desired, now=now,
                           scale=self._policy.scale):
            return
        rollout.finish("complete", now)
        self._stable[(desired.project, desired.service)] = desired
        self._event(project=rollout.project, service=rollout.service, kind="rollout-complete",
                    message=f"{rollout.service}: release {rollout.release} rolled out, {desired.replicas}/"
                            f"{desired.replicas} available after {now - rollout.started_at:.1f}s",
                    details={"release": rollout.release, "from_release": rollout.from_release,
                             "seconds": round(now - rollout.started_at, 3)})

    def _watch_availability(self, rollout: Rollout, desired: Desired) -> None:
        """Look again once a new replica has run min_ready: that is when it becomes available."""
        when = self._clock.time() + desired.min_ready * self._policy.scale + 0.001
        rollout.timers.append(self._clock.call_at(
            when, lambda: self._later(self.reconcile(rollout.project, rollout.service))))

    async def _deadline(self, rollout: Rollout) -> None:
        async with self._lock(rollout.project, rollout.service):
            if rollout.done:
                return
            desired = self._desired(rollout.project, rollout.service)
            limit = desired.progress_deadline if desired else 0.0
            counts = self._counts(rollout)
            await self._fail_rollout(rollout, None, reason=(
                f"not finished within its progress_deadline ({limit:g}s): {counts['new_available']}/"
                f"{counts['replicas']} new replicas available"))
            await self._reconcile(rollout.project, rollout.service, fresh=False)
        async with self._changed:
            self._changed.notify_all()

    async def _fail_rollout(self, rollout: Rollout, slot: Slot | None, *, reason: str,
                            exit_details: dict[str, Any] | None = None) -> None:
        """Stop the new replicas and keep (or bring back) the old release; with no old release (a first
        deploy) the new replicas stay under the restart policy, so the crash loop shows in `ps`."""
        rollout.finish("failed", self._clock.time())
        rollout.reason, rollout.exit = reason, exit_details
        stable = self._stable.get((rollout.project, rollout.service))
        desired = self._desired(rollout.project, rollout.service)
        if stable is not None:
            rollout.restored = True
            for other in self._service_slots(rollout.project, rollout.service):
                if other.incoming is not None and other.incoming.config == rollout.config:
                    await self._stop_live(other, other.incoming, desired)
            if rollout.strategy == "recreate" or stable.replicas == 0:
                for other in self._service_slots(rollout.project, rollout.service):
                    if other.current is not None and other.current.config == rollout.config:
                        await self._stop_current(other, desired)
            self._rollout_failed(rollout)
        kept = (f"release {rollout.from_release} started again" if rollout.strategy == "recreate"
                else f"release {rollout.from_release} kept running") if stable is not None else \
            "no earlier release to keep: the new replicas stay under the restart policy"
        lines = (exit_details or {}).get("last_lines") or []
        self._event(project=rollout.project, service=rollout.service, replica=slot.replica if slot else None,
                    kind="rollout-failed", message=f"{rollout.service}: release {rollout.release} failed to roll "
                                                   f"out: {reason}; {kept}",
                    details={"release": rollout.release, "from_release": rollout.from_release, "reason": reason,
                             "restored": rollout.restored, "exit": exit_details, "last_lines": lines})

    async def _retire(self, slot: Slot, desired: Desired | None) -> None:
        self._disarm(slot)
        if slot.incoming is not None:
            await self._stop_live(slot, slot.incoming, desired)
        if slot.current is not None:
            await self._stop_current(slot, desired)
        if not slot.old:
            self._drop(slot)

    async def _stop_current(self, slot: Slot, desired: Desired | None) -> None:
        assert slot.current is not None
        await self._stop_live(slot, slot.current, desired)

    async def _stop_live(self, slot: Slot, live: Live, desired: Desired | None) -> None:
        """Move `live` (the slot's current, incoming or a stray) to the stopping set and ask it to stop."""
        if slot.current is live:
            slot.current = None
        if slot.incoming is live:
            slot.incoming = None
        slot.old[live.key] = live
        await self._stop(live, desired)

    async def _stop(self, live: Live, desired: Desired | None) -> None:
        live.stopping = True
        sig = desired.stop_signal if desired else 15
        grace = (desired.shutdown_grace if desired else 30.0) * self._policy.scale
        await self._runner.call("stop", key=live.key, signal=sig, grace=grace)

    async def _spawn(self, slot: Slot, desired: Desired, *, rollout: Rollout | None = None,
                     incoming: bool = False) -> None:
        if slot.config != desired.config and not incoming:
            slot.restart_count = slot.streak = 0
            slot.restart_pending = False
            slot.config = desired.config
        key = f"{slot.project}.{slot.service}.{slot.replica}.{uuid.uuid4().hex[:8]}"
        env = spawn_env(desired, {"STACKBLAZE_REPLICA": str(slot.replica)})
        meta = {"project": slot.project, "service": slot.service, "replica": slot.replica,
                "release": desired.release, "config": desired.config}
        log_path = self._logs_dir / slot.project / slot.service / f"{slot.replica}.log"
        if not incoming:
            slot.next_restart_at = None
        try:
            cwd = await self._workdir(slot.project, key, desired)
            reply = await self._runner.call(
                "spawn", key=key, argv=start_argv(desired.start), env=env, cwd=cwd,
                log_path=str(log_path), log_max_bytes=desired.log_max_bytes,
                log_max_files=desired.log_max_files, meta=meta, **spawn_fields(desired),
            )
        except UnavailableError as exc:
            if self._workdirs is not None:  # no instance: no exit will come to remove its copy
                await asyncio.to_thread(self._workdirs.discard, slot.project, key)
            if not self._runner.connected:
                return  # not the worker's fault: the runner is being replaced, which reconciles again
            now = self._clock.time()
            errno = exc.errno if isinstance(exc, SpawnFailed) else None
            code = SHELL_EXIT_CODES.get(errno or "")  # other reasons are said in words, not as a made-up code
            reason = None
            if code is None:
                words = exc.reason if isinstance(exc, SpawnFailed) and exc.reason else str(exc)
                reason = f"could not start: {words}" + (f" ({errno})" if errno else "")
            self._event(project=slot.project, service=slot.service, replica=slot.replica, kind="start-failed",
                        message=f"{slot.service}.{slot.replica} could not start: {exc}",
                        details={"errno": errno, "release": desired.release})
            record = {"exit_code": code, "exit_signal": None, "exited_at": now, "started_at": now,
                      "release": desired.release, "key": key, "config": desired.config, "reason": reason}
            await self._new_replica_ended(slot, record, rollout=rollout, incoming=incoming)
            return
        record = reply["instance"]
        live = Live(key, record["pid"], record["started_at"], desired.release, desired.config)
        if incoming:
            slot.incoming = live
        else:
            slot.current = live
            if slot.restart_pending:
                slot.restart_count += 1
                slot.restart_pending = False
            self._save(slot)
        if rollout is not None:
            self._watch_availability(rollout, desired)
        self._event(project=slot.project, service=slot.service, replica=slot.replica, kind="start",
                    message=f"{slot.service}.{slot.replica} started (pid {record['pid']}, "
                            f"release {desired.release})",
                    details={"pid": record["pid"], "release": desired.release,
                             "restart_count": slot.restart_count})

    # -- exits -------------------------------------------------------------------------------------

    async def _workdir(self, project: str, key: str, desired: Desired) -> str:
        """The instance's own copy of its release (isolation.working_dir); one that cannot be made for another
        reason than a full disk is a start that failed, reported and retried like any other."""
        try:
            return await working_dir(self._workdirs, project=project, key=key, desired=desired)
        except OSError as exc:
            raise SpawnFailed(str(exc), errno=errno_name(exc),
                              reason=f"its working directory could not be made: {exc}") from None

    async def handle_exit(self, record: dict[str, Any]) -> None:
        meta = record.get("meta") or {}
        key = record["key"]
        project, service = meta.get("project"), meta.get("service")
        slot = self._slots.get((project, service, int(meta.get("replica", 0))))  # type: ignore[arg-type]
        if slot is None or project is None or service is None:
            await self._runner.call("ack", keys=[key])
            return
        async with self._lock(project, service):
            ended = {**record, "release": meta.get("release"), "config": meta.get("config")}
            rollout = self._rollouts.get((project, service))
            if slot.last_exit is not None and slot.last_exit.get("key") == key:
                slot.current = None if slot.current and slot.current.key == key else slot.current
                slot.old.pop(key, None)  # handled before a daemon crash, not acked yet: do not count twice
            elif slot.incoming is not None and slot.incoming.key == key:
                slot.incoming = None
                await self._new_replica_ended(slot, ended, rollout=rollout, incoming=True)
            elif slot.current is not None and slot.current.key == key:
                slot.current = None
                await self._new_replica_ended(slot, ended, rollout=rollout, incoming=False)
            else:
                slot.old.pop(key, None)
                report_exit(self._event, slot, record, exit_details(ended), verb="stopped")
                if not slot.old and slot.current is None and slot.incoming is None and slot.timer is None:
                    desired = self._desired(project, service)
                    if slot.replica not in replica_numbers(desired):
                        self._drop(slot)
            await self._runner.call("ack", keys=[key])
            if self._workdirs is not None:
                await asyncio.to_thread(self._workdirs.discard, project, key)
            await self._reconcile(project, service, fresh=False)
        async with self._changed:
            self._changed.notify_all()

    async def _new_replica_ended(self, slot: Slot, record: dict[str, Any], *, rollout: Rollout | None,
                                 incoming: bool) -> None:
        """A replica the slot counts on ended: a crash to restart, unless it fails a rollout first."""
        desired = self._desired(slot.project, slot.service)
        ready = (desired.min_ready if desired else 0.0) * self._policy.scale
        ran_for = record["exited_at"] - record["started_at"]
        failing = (rollout is not None and not rollout.done and record.get("config") == rollout.config
                   and ran_for < ready)
        if not failing:
            if incoming:  # an old replica still serves this slot: nothing to restart
                report_exit(self._event, slot, record, exit_details(record))
            else:
                await self._crashed(slot, record)
            return
        assert rollout is not None
        details = {**exit_details(record), "last_lines": await self._last_lines(
            slot.project, slot.service, slot.replica, record["started_at"])}
        reason = (f"{slot.service}.{slot.replica} {exit_words(record)} after {ran_for:.1f}s, before it was "
                  f"available (min_ready {desired.min_ready if desired else 0:g}s)")
        has_previous = (slot.project, slot.service) in self._stable
        if has_previous or incoming:
            slot.last_exit = details
            report_exit(self._event, slot, record, details, ran_for=ran_for)
            await self._fail_rollout(rollout, slot, reason=reason, exit_details=details)
        else:  # a first deploy: nothing to go back to; the restart policy keeps trying
            await self._fail_rollout(rollout, slot, reason=reason, exit_details=details)
            await self._crashed(slot, record)

    async def _crashed(self, slot: Slot, record: dict[str, Any]) -> None:
        details = {**exit_details(record), "last_lines": await self._last_lines(
            slot.project, slot.service, slot.replica, record["started_at"])}
        slot.last_exit = details  # with its last lines: ps shows them, `logs --previous` reads them
        if record.get("not_a_crash"):  # the runner died: the worker did nothing wrong, restart it at once
            delay = 0.0
        else:
            slot.streak = self._policy.next_streak(slot.streak, details["ran_for"])
            delay = self._policy.delay_for(slot.streak)
        restart_at = record["exited_at"] + delay
        slot.restart_pending = True  # counted in restart_count when it happens, not when it is planned
        report_exit(self._event, slot, record, details, ran_for=details["ran_for"])
        report_restart(self._event, slot, restart_at=restart_at, delay=delay, now=self._clock.time())
        self._arm(slot, restart_at)
        self._save(slot)


    def _arm(self, slot: Slot, when: float) -> None:
        self._disarm(slot)
        slot.next_restart_at = when
        slot.timer = self._clock.call_at(when, lambda: self._later(self._restart(slot)))

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a timer's work as a task of its own, kept until done (the loop holds tasks weakly)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _disarm(self, slot: Slot) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None

    async def _restart(self, slot: Slot) -> None:
        slot.timer = None
        await self.reconcile(slot.project, slot.service)

    # -- stopping everything -----------------------------------------------------------------------

    async def wait_stopped(self, project: str, service: str | None = None, timeout: float = 660.0) -> None:
        """Until no process of the project (or service) is left."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: not self.pids(project, service)), timeout=timeout
            )

    async def handle_log_drops(self, message: dict[str, Any]) -> None:
        """The runner could not write a replica's log (disk full) or writes it again: say so once each way,
        with the count of lines lost, in events and in `ps`."""
        instance = message.get("instance") or {}
        meta = instance.get("meta") or {}
        key = (str(meta.get("project")), str(meta.get("service")), int(meta.get("replica", 0)))
        slot = self._slots.get(key)
        if slot is not None:
            note_log_drops(self._event, slot, message)

    async def handle_runner_lost(self) -> None:
        """The runner died (a bug, or kill -9). Its replicas died with it (PR_SET_PDEATHSIG; the next runner
        sweeps what is left of them): start a new runner and restart every replica at once. It is recorded
        as an exit with its reason, but not as the worker's crash: the back-off does not grow."""
        lost = [(slot, slot.current) for slot in self._slots.values() if slot.current is not None]
        for slot in self._slots.values():
            slot.current = slot.incoming = None
            slot.old.clear()
        while True:
            try:
                await self._runner.connect()
                break
            except UnavailableError as exc:  # keep trying: without a runner nothing can run
                log.error("cannot start a new runner: %s", exc)
                await asyncio.sleep(1.0)
        now = self._clock.time()
        for slot, live in lost:
            assert live is not None
            async with self._lock(slot.project, slot.service):
                await self._crashed(slot, {
                    "key": live.key, "exit_code": None, "exit_signal": 9, "exited_at": now,
                    "started_at": live.started_at, "release": live.release,
                    "reason": "the runner died, and the replica with it", "not_a_crash": True, "pid": live.pid,
                })
        for project, service in self._services():
            await self.reconcile(project, service)
        async with self._changed:
            self._changed.notify_all()

    def halt(self) -> None:
        """Stop acting: no restart, no spawn; exits are no longer handled (the runner is shutting down)."""
        self._runner.on_exit = None
        self._runner.on_lost = None
        self._runner.on_log_drops = None
        for slot in self._slots.values():
            self._disarm(slot)
        for rollout in self._rollouts.values():
            rollout.finish(rollout.state, self._clock.time())

    @property
    def logs(self) -> LocalLogs:
        return LocalLogs(self)

    def forget(self, project: str, service: str | None = None) -> None:
        for slot in list(self._slots.values()):
            if slot.project == project and (service is None or slot.service == service):
                self._disarm(slot)
                self._drop(slot)

    # -- helpers -----------------------------------------------------------------------------------

    def _service_slots(self, project: str, service: str) -> list[Slot]:
        return [s for s in self._slots.values() if (s.project, s.service) == (project, service)]

    def _slot(self, project: str, service: str, replica: int) -> Slot:
        key = (project, service, replica)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = Slot(project, service, replica)
        return slot

    def _drop(self, slot: Slot) -> None:
        self._slots.pop((slot.project, slot.service, slot.replica), None)
        self._store.delete_replica_status(slot.project, slot.service, slot.replica)

    def _save(self, slot: Slot) -> None:
        self._store.save_replica_status(slot.project, slot.service, slot.replica, slot.saved())

    def _lock(self, project: str, service: str) -> asyncio.Lock:
        return self._locks.setdefault((project, service), asyncio.Lock())



class LocalLogs:
    """The runner's CRI files, and a replica's previous run as its last exit recorded it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def log_dir(self, project: str) -> Path:
        return self._supervisor._logs_dir / project

    async def previous(self, project: str, service: str, replica: int, count: int) -> list[str]:
        for status in self._supervisor.status(project, service):
            if status.get("replica") == replica and status.get("last_exit"):
                return list(status["last_exit"].get("last_lines") or [])[-count:]
        return []


def errno_name(exc: OSError) -> str:
    """A full disk by its name; anything else as EIO, never as a code that would read as "not runnable"."""
    return errnos.errorcode[exc.errno] if exc.errno in (errnos.ENOSPC, errnos.EDQUOT) else "EIO"
