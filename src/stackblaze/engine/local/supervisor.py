"""The local engine's control loop: desired vs actual per replica slot, the restart policy, rollouts.

It owns no process: it asks the runner to spawn and stop, and hears of every exit from it. Timers are
asyncio timers set for the exact restart time; nothing here polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.exits import describe_exit, signal_name
from stackblaze.engine.local.runner_client import RunnerClient
from stackblaze.errors import UnavailableError
from stackblaze.spec.commands import start_argv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Desired:
    """What one service should look like, resolved by the control plane (env already decrypted)."""

    project: str
    service: str
    replicas: int
    release: int
    cwd: str
    start: str
    env: dict[str, str]
    stop_signal: int
    shutdown_grace: float
    strategy: str
    config: str  # digest of everything that, when changed, needs new processes
    log_max_bytes: int = 10 << 20
    log_max_files: int = 5


class StatusStore(Protocol):
    def replica_statuses(self, project: str) -> dict[tuple[str, int], dict[str, Any]]: ...
    def save_replica_status(self, project: str, service: str, replica: int, status: dict[str, Any]) -> None: ...
    def delete_replica_status(self, project: str, service: str, replica: int) -> None: ...


EventSink = Callable[..., None]


@dataclass
class Live:
    key: str
    pid: int
    started_at: float
    release: int
    config: str
    stopping: bool = False


@dataclass
class Slot:
    project: str
    service: str
    replica: int
    current: Live | None = None
    old: dict[str, Live] = field(default_factory=dict)
    restart_count: int = 0
    streak: int = 0
    last_exit: dict[str, Any] | None = None
    next_restart_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    config: str | None = None  # what the restart counters count for: a new rollout starts them over

    def saved(self) -> dict[str, Any]:
        return {
            "restart_count": self.restart_count, "streak": self.streak, "last_exit": self.last_exit,
            "next_restart_at": self.next_restart_at, "config": self.config,
        }


class Supervisor:
    def __init__(
        self, *, runner: RunnerClient, store: StatusStore, policy: BackoffPolicy, logs_dir: Path,
        desired: Callable[[str, str], Desired | None], services: Callable[[], list[tuple[str, str]]],
        record_event: EventSink, clock: Callable[[], float] = time.time,
        last_lines: Callable[[str, str, int, float], list[str]] = lambda *_: [],
    ) -> None:
        self._runner = runner
        self._store = store
        self._policy = policy
        self._logs_dir = logs_dir
        self._desired = desired
        self._services = services
        self._event = record_event
        self._clock = clock
        self._last_lines = last_lines  # (project, service, replica, since) -> the replica's last log lines
        self._slots: dict[tuple[str, str, int], Slot] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._changed = asyncio.Condition()
        runner.on_exit = self.handle_exit
        runner.on_lost = self.handle_runner_lost

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
        listing = await self._runner.call("list")
        exited = []
        # Running instances first, so that an exit we missed is matched against the slot's live replica.
        for record in sorted(listing["instances"], key=lambda r: r["state"] == "exited"):
            meta = record.get("meta") or {}
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
            if live.stopping or (slot.current is not None and desired and live.config != desired.config):
                slot.old[live.key] = live
            elif slot.current is None or record["state"] != "exited":
                if slot.current is not None:
                    slot.old[slot.current.key] = slot.current
                slot.current = live
            else:
                slot.old[live.key] = live
        for slot in self._slots.values():
            if slot.current is None and slot.next_restart_at is not None:
                self._arm(slot, slot.next_restart_at)
        for record in exited:
            await self.handle_exit(record)
        for project, service in self._services():
            await self.reconcile(project, service)

    # -- status ------------------------------------------------------------------------------------

    def status(self, project: str, service: str | None = None) -> list[dict[str, Any]]:
        now = self._clock()
        rows = []
        for slot in sorted(self._slots.values(), key=lambda s: (s.service, s.replica)):
            if slot.project != project or (service is not None and slot.service != service):
                continue
            live = slot.current or next(iter(slot.old.values()), None)
            if slot.current is not None:
                state = "running"
            elif slot.old:
                state = "stopping"
            elif slot.timer is not None:
                state = "waiting"
            else:
                state = "stopped"
            rows.append({
                "service": slot.service, "replica": slot.replica, "state": state,
                "release": live.release if live else (slot.last_exit or {}).get("release"),
                "pid": live.pid if live else None,
                "started_at": live.started_at if live else None,
                "uptime": now - live.started_at if live else None,
                "restart_count": slot.restart_count, "last_exit": slot.last_exit,
                "next_restart_at": slot.next_restart_at if slot.timer is not None else None,
                "stopping": [{"pid": o.pid, "release": o.release} for o in slot.old.values()],
            })
        return rows

    def pids(self, project: str, service: str | None = None) -> list[int]:
        return [
            live.pid for slot in self._slots.values()
            if slot.project == project and (service is None or slot.service == service)
            for live in ([slot.current] if slot.current else []) + list(slot.old.values())
        ]

    # -- reconcile ---------------------------------------------------------------------------------

    async def reconcile(self, project: str, service: str, *, fresh: bool = False) -> None:
        """Bring one service to its desired state; `fresh` starts waiting replicas now (a new rollout)."""
        async with self._lock(project, service):
            await self._reconcile(project, service, fresh=fresh)

    async def _reconcile(self, project: str, service: str, *, fresh: bool) -> None:
        desired = self._desired(project, service)
        want = 0 if desired is None else desired.replicas
        slots = sorted((s for s in self._slots.values() if (s.project, s.service) == (project, service)),
                       key=lambda s: -s.replica)
        for slot in slots:
            if slot.replica > want:  # highest-numbered first
                await self._retire(slot, desired)
        if desired is None:
            return
        recreate = desired.strategy == "recreate"
        stale = [self._slot(project, service, n) for n in range(1, want + 1)]
        stale = [s for s in stale if s.current is not None and s.current.config != desired.config]
        if recreate:
            for slot in stale:
                await self._stop_current(slot, desired)
        for replica in range(1, want + 1):
            slot = self._slot(project, service, replica)
            if fresh and slot.current is None and slot.timer is not None:
                self._disarm(slot)
            if slot.current is not None and slot.current.config != desired.config and not recreate:
                # rolling: the new replica first, then the old one is asked to stop
                previous = slot.current
                slot.current = None
                await self._spawn(slot, desired)
                slot.old[previous.key] = previous
                await self._stop(previous, desired)
            blocked = recreate and any(s.old for s in self._slots.values()
                                       if (s.project, s.service) == (project, service))
            if slot.current is None and slot.timer is None and not blocked:
                await self._spawn(slot, desired)

    async def _retire(self, slot: Slot, desired: Desired | None) -> None:
        self._disarm(slot)
        if slot.current is not None:
            await self._stop_current(slot, desired)
        if not slot.old:
            self._drop(slot)

    async def _stop_current(self, slot: Slot, desired: Desired | None) -> None:
        assert slot.current is not None
        live, slot.current = slot.current, None
        slot.old[live.key] = live
        await self._stop(live, desired)

    async def _stop(self, live: Live, desired: Desired | None) -> None:
        live.stopping = True
        sig = desired.stop_signal if desired else 15
        grace = (desired.shutdown_grace if desired else 30.0) * self._policy.scale
        await self._runner.call("stop", key=live.key, signal=sig, grace=grace)

    async def _spawn(self, slot: Slot, desired: Desired) -> None:
        if slot.config != desired.config:
            slot.restart_count = slot.streak = 0
            slot.config = desired.config
        key = f"{slot.project}.{slot.service}.{slot.replica}.{uuid.uuid4().hex[:8]}"
        env = dict(desired.env)
        env.update({
            "STACKBLAZE_SERVICE": slot.service, "STACKBLAZE_REPLICA": str(slot.replica),
            "STACKBLAZE_RELEASE": str(desired.release),
            "STACKBLAZE_SHUTDOWN_GRACE_SECONDS": f"{desired.shutdown_grace:g}",
        })
        meta = {"project": slot.project, "service": slot.service, "replica": slot.replica,
                "release": desired.release, "config": desired.config}
        log_path = self._logs_dir / slot.project / slot.service / f"{slot.replica}.log"
        slot.next_restart_at = None
        try:
            reply = await self._runner.call(
                "spawn", key=key, argv=start_argv(desired.start), env=env, cwd=desired.cwd,
                log_path=str(log_path), log_max_bytes=desired.log_max_bytes,
                log_max_files=desired.log_max_files, meta=meta,
            )
        except UnavailableError as exc:
            if not self._runner.connected:
                return  # not the worker's fault: the runner is being replaced, which reconciles again
            now = self._clock()
            code = 127 if "FileNotFoundError" in str(exc) else 126
            self._event(project=slot.project, service=slot.service, replica=slot.replica, kind="start-failed",
                        message=f"{slot.service}.{slot.replica} could not start: {exc}")
            await self._crashed(slot, {"exit_code": code, "exit_signal": None, "exited_at": now,
                                       "started_at": now, "release": desired.release})
            return
        record = reply["instance"]
        slot.current = Live(key, record["pid"], record["started_at"], desired.release, desired.config)
        self._save(slot)
        self._event(project=slot.project, service=slot.service, replica=slot.replica, kind="start",
                    message=f"{slot.service}.{slot.replica} started (pid {record['pid']}, "
                            f"release {desired.release})",
                    details={"pid": record["pid"], "release": desired.release,
                             "restart_count": slot.restart_count})

    # -- exits -------------------------------------------------------------------------------------

    async def handle_exit(self, record: dict[str, Any]) -> None:
        meta = record.get("meta") or {}
        key = record["key"]
        project, service = meta.get("project"), meta.get("service")
        slot = self._slots.get((project, service, int(meta.get("replica", 0))))  # type: ignore[arg-type]
        if slot is None or project is None or service is None:
            await self._runner.call("ack", keys=[key])
            return
        async with self._lock(project, service):
            if slot.last_exit is not None and slot.last_exit.get("key") == key:
                slot.current = None if slot.current and slot.current.key == key else slot.current
                slot.old.pop(key, None)  # handled before a daemon crash, not acked yet: do not count twice
            elif slot.current is not None and slot.current.key == key:
                slot.current = None
                await self._crashed(slot, {**record, "release": meta.get("release")})
            else:
                slot.old.pop(key, None)
                self._event(project=project, service=service, replica=slot.replica, kind="exit",
                            message=f"{service}.{slot.replica} stopped ({self._exit_words(record)})",
                            details=self._exit_details({**record, "release": meta.get("release")}))
                if not slot.old and slot.current is None and slot.timer is None:
                    desired = self._desired(project, service)
                    if desired is None or slot.replica > desired.replicas:
                        self._drop(slot)
            await self._runner.call("ack", keys=[key])
            await self._reconcile(project, service, fresh=False)
        async with self._changed:
            self._changed.notify_all()

    async def _crashed(self, slot: Slot, record: dict[str, Any]) -> None:
        details = self._exit_details(record)
        slot.last_exit = details
        details = {**details, "last_lines": await asyncio.to_thread(
            self._last_lines, slot.project, slot.service, slot.replica, record["started_at"])}
        slot.streak = self._policy.next_streak(slot.streak, details["ran_for"])
        delay = self._policy.delay_for(slot.streak)
        restart_at = record["exited_at"] + delay
        slot.restart_count += 1
        self._event(project=slot.project, service=slot.service, replica=slot.replica, kind="exit",
                    message=f"{slot.service}.{slot.replica} exited ({self._exit_words(record)}) "
                            f"after {details['ran_for']:.1f}s",
                    details=details, at=record["exited_at"])
        self._event(project=slot.project, service=slot.service, replica=slot.replica,
                    kind="restart-scheduled",
                    message=f"{slot.service}.{slot.replica} restarts in {max(0.0, restart_at - self._clock()):.2f}s "
                            f"(restart #{slot.restart_count})",
                    details={"restart_at": restart_at, "delay": delay, "restart_count": slot.restart_count})
        self._arm(slot, restart_at)
        self._save(slot)

    def _arm(self, slot: Slot, when: float) -> None:
        self._disarm(slot)
        slot.next_restart_at = when
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - self._clock())
        slot.timer = loop.call_later(delay, lambda: asyncio.ensure_future(self._restart(slot)))

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

    async def handle_runner_lost(self) -> None:
        """The runner died (a bug, or kill -9). Its replicas died with it (PR_SET_PDEATHSIG; the next runner
        kills what is left in their cgroups): start a new runner, count each replica's end as a crash, and
        let the restart policy bring them back."""
        lost = [(slot, slot.current) for slot in self._slots.values() if slot.current is not None]
        for slot in self._slots.values():
            slot.current = None
            slot.old.clear()
        while True:
            try:
                await self._runner.connect()
                break
            except UnavailableError as exc:  # keep trying: without a runner nothing can run
                log.error("cannot start a new runner: %s", exc)
                await asyncio.sleep(1.0)
        now = self._clock()
        for slot, live in lost:
            assert live is not None
            async with self._lock(slot.project, slot.service):
                await self._crashed(slot, {
                    "key": live.key, "exit_code": None, "exit_signal": 9, "exited_at": now,
                    "started_at": live.started_at, "release": live.release,
                    "reason": "the runner died, and the replica with it",
                })
        for project, service in self._services():
            await self.reconcile(project, service)
        async with self._changed:
            self._changed.notify_all()

    def halt(self) -> None:
        """Stop acting: no restart, no spawn; exits are no longer handled (the runner is shutting down)."""
        self._runner.on_exit = None
        self._runner.on_lost = None
        for slot in self._slots.values():
            self._disarm(slot)

    def forget(self, project: str, service: str | None = None) -> None:
        for slot in list(self._slots.values()):
            if slot.project == project and (service is None or slot.service == service):
                self._disarm(slot)
                self._drop(slot)

    # -- helpers -----------------------------------------------------------------------------------

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

    @staticmethod
    def _exit_words(record: dict[str, Any]) -> str:
        return str(record.get("reason") or describe_exit(code=record.get("exit_code"), sig=record.get("exit_signal")))

    def _exit_details(self, record: dict[str, Any]) -> dict[str, Any]:
        sig = record.get("exit_signal")
        return {
            "code": record.get("exit_code"), "signal": signal_name(sig) if sig else None,
            "meaning": self._exit_words(record), "at": record["exited_at"],
            "ran_for": max(0.0, record["exited_at"] - record["started_at"]),
            "release": record.get("release"), "key": record.get("key"),
        }

