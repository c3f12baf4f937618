"""The local engine's cron scheduler: each tick of a cron service runs as a one-off process of the runner.

A cron service has no replicas (the supervisor keeps none of it); here each tick spawns one run, with its
own instance key (`<project>.<service>.cron.<hex>`), its own log (`<service>/<N>.log`, the runner's CRI
lines, so `logs`, drains and `logs --run N` read it) and `meta.cron`, by which the supervisor leaves it
alone at start and the local engine routes its exit here. Schedule decisions use the injected clock (the
platform's: ScaledClock under STACKBLAZE_TIME_SCALE); run times are the runner's, real.

concurrency: forbid skips a tick while a run goes on (`cron-skipped`); replace stops the old run (stop
signal, shutdown_grace, SIGKILL) and starts the new one; allow runs both. timeout stops a run the same way.
A failed run (non-zero exit, or a signal) runs again up to `retries` times, unless it was stopped on purpose
or by its timeout (a Job's activeDeadlineSeconds also ends its retries). The last tick considered is stored:
a daemon that was down over ticks runs none of them late, unless catch_up (then one run).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackblaze.engine.clock import Clock, Handle
from stackblaze.engine.cron import RunRow, RunStore
from stackblaze.engine.exits import describe_exit_record, signal_name
from stackblaze.engine.local.isolation import spawn_env, spawn_fields, working_dir
from stackblaze.engine.local.spawnfail import SHELL_EXIT_CODES
from stackblaze.engine.protocol import Desired, EventSink
from stackblaze.engine.schedule import describe, next_tick, ticks_between
from stackblaze.engine.workdirs import Workdirs
from stackblaze.errors import NotFoundError, UnavailableError
from stackblaze.spec.commands import start_argv

if TYPE_CHECKING:
    from stackblaze.engine.local.supervisor import Runner

log = logging.getLogger(__name__)
LAST_LINES = 20


@dataclass
class Run:
    """A run in progress, as the scheduler follows it."""

    row: RunRow
    pid: int
    timeout: Handle | None = None
    reason: str | None = None  # set when we stop it: timeout | replaced | stopped


@dataclass
class Entry:
    """One cron service: its timer and its runs in progress."""

    project: str
    service: str
    timer: Handle | None = None
    armed_for: tuple[str, str] | None = None  # (schedule, timezone) the timer was set for
    next_tick: float | None = None  # platform time
    runs: dict[str, Run] = field(default_factory=dict)  # by instance key


class Scheduler:
    def __init__(self, *, runner: Runner, runs: RunStore, clock: Clock, logs_dir: Path,
                 desired: Callable[[str, str], Desired | None], services: Callable[[], list[tuple[str, str]]],
                 record_event: EventSink, scale: float = 1.0, to_wall: Callable[[float], float] = lambda t: t,
                 last_lines: Callable[[str, str, int, float], Awaitable[list[str]]] | None = None,
                 workdirs: Workdirs | None = None) -> None:
        self._runner = runner
        self._store = runs
        self._clock = clock
        self._logs_dir = logs_dir
        self._desired = desired
        self._services = services
        self._event = record_event
        self._scale = scale  # real seconds per platform second: the runner's grace is real
        self._to_wall = to_wall
        self._last_lines = last_lines
        self._workdirs = workdirs
        self._entries: dict[tuple[str, str], Entry] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()  # notified when a run ends (wait_stopped)
        self._halted = False

    # -- start-up ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt the runs the runner still has (a daemon that restarted), finish those that ended meanwhile,
        run a missed tick once for catch_up services, then arm every service's timer."""
        listing = await self._runner.call("list")
        exited = []
        for record in listing["instances"]:
            meta = record.get("meta") or {}
            if not meta.get("cron"):
                continue
            if record["state"] == "exited":
                exited.append(record)
                continue
            entry = self._entry(meta["project"], meta["service"])
            row = self._store.run(meta["project"], meta["service"], int(meta["run"]))
            if row is None:  # its row is gone (the project was destroyed): nothing wants it
                await self._runner.call("stop", key=record["key"], signal=15, grace=30.0 * self._scale)
                continue
            run = entry.runs[record["key"]] = Run(row, record["pid"], reason=meta.get("reason"))
            desired = self._desired(row.project, row.service)
            if desired is not None and desired.cron is not None and desired.cron.timeout is not None:
                spent = (self._now_wall() - row.started) / self._scale
                self._arm_timeout(run, desired, desired.cron.timeout - spent)
        for record in exited:
            await self.handle_exit(record)
        now = self._clock.time()
        for project, service in self._services():
            desired = self._desired(project, service)
            if not _active(desired):
                continue
            assert desired is not None and desired.cron is not None
            last = self._store.last_tick(project, service)
            if last is None:
                continue  # never scheduled yet: reconcile starts counting from now
            missed = ticks_between(desired.cron.schedule, desired.cron.timezone, last, now)
            if not missed:
                continue
            self._store.set_last_tick(project, service, missed[-1])
            if desired.cron.catch_up:
                async with self._lock:
                    await self._trigger(self._entry(project, service), desired, "catch-up", note=(
                        f"{len(missed)} tick(s) missed while the daemon was down; catch_up runs one now"))
            else:
                self._event(project=project, service=service, kind="cron-skipped",
                            message=f"{service}: {len(missed)} tick(s) missed while the daemon was down, not run "
                                    f"late (catch_up: true would run one)",
                            details={"missed": len(missed), "reason": "daemon-down"})
        for project, service in self._services():
            await self.reconcile(project, service)

    # -- what the engine facade asks ------------------------------------------------------------------

    async def reconcile(self, project: str, service: str) -> None:
        async with self._lock:
            await self._reconcile(project, service)

    async def _reconcile(self, project: str, service: str) -> None:
        desired = self._desired(project, service)
        entry = self._entries.get((project, service))
        if desired is None or desired.kind != "cron" or desired.cron is None or desired.replicas == 0:
            # Gone, stopped or no longer cron: no tick, and its runs stop (a suspension lets them finish).
            if entry is not None:
                self._disarm(entry)
                for run in list(entry.runs.values()):
                    await self._stop(run, desired, reason="stopped")
                if not entry.runs:
                    self._entries.pop((project, service), None)
            return
        entry = self._entry(project, service)
        if desired.suspended:
            self._disarm(entry)
            return
        wanted = (desired.cron.schedule, desired.cron.timezone)
        if entry.timer is not None and entry.armed_for == wanted:
            return
        now = self._clock.time()
        if entry.timer is None:
            # Newly scheduled (a deploy, a resume, a start): counting starts now, nothing before runs late.
            self._store.set_last_tick(project, service, now)
        self._arm(entry, desired, after=now)

    def next_run(self, project: str, service: str) -> float | None:
        entry = self._entries.get((project, service))
        if entry is None or entry.timer is None or entry.next_tick is None:
            return None
        return self._to_wall(entry.next_tick)

    def active_runs(self, project: str, service: str) -> list[int]:
        entry = self._entries.get((project, service))
        return sorted(run.row.number for run in entry.runs.values()) if entry else []

    async def wait_stopped(self, project: str, service: str | None = None, timeout: float = 660.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: not self.pids(project, service)), timeout=timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def pids(self, project: str, service: str | None = None) -> list[int]:
        return [run.pid for entry in self._entries.values()
                if entry.project == project and service in (None, entry.service) for run in entry.runs.values()]

    async def run_now(self, project: str, service: str) -> RunRow:
        """`cron run NAME`: one run now, outside the schedule (whatever runs already, as `kubectl create job
        --from=cronjob/NAME` does)."""
        desired = self._desired(project, service)
        if desired is None or desired.kind != "cron" or desired.cron is None:
            raise NotFoundError(f"{service}: not a cron service (cron run runs a service of type: cron)")
        async with self._lock:
            row = await self._trigger(self._entry(project, service), desired, "manual")
        assert row is not None  # a manual run is never skipped
        return row

    def forget(self, project: str, service: str | None = None) -> None:
        for key, entry in list(self._entries.items()):
            if entry.project == project and service in (None, entry.service):
                self._disarm(entry)
                del self._entries[key]
        self._store.forget(project, service)

    def halt(self) -> None:
        self._halted = True
        for entry in self._entries.values():
            self._disarm(entry)
            for run in entry.runs.values():
                if run.timeout is not None:
                    run.timeout.cancel()

    # -- ticks ---------------------------------------------------------------------------------------

    def _arm(self, entry: Entry, desired: Desired, *, after: float) -> None:
        assert desired.cron is not None
        self._disarm(entry)
        tick = next_tick(desired.cron.schedule, desired.cron.timezone, after)
        entry.next_tick = tick
        entry.armed_for = (desired.cron.schedule, desired.cron.timezone)
        entry.timer = self._clock.call_at(tick, lambda: self._later(self._tick(entry, tick)))

    def _disarm(self, entry: Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer = entry.next_tick = entry.armed_for = None

    async def _tick(self, entry: Entry, tick: float) -> None:
        async with self._lock:
            if self._halted or entry.next_tick != tick:
                return  # disarmed or re-armed since
            entry.timer = None
            desired = self._desired(entry.project, entry.service)
            if not _active(desired):
                return
            assert desired is not None
            self._store.set_last_tick(entry.project, entry.service, tick)
            await self._trigger(entry, desired, "schedule")
            self._arm(entry, desired, after=max(tick, self._clock.time() - 1.0))

    async def _trigger(self, entry: Entry, desired: Desired, trigger: str, *, attempt: int = 1,
                       note: str | None = None) -> RunRow | None:
        assert desired.cron is not None
        going = [run for run in entry.runs.values() if run.reason is None]
        if going and trigger in ("schedule", "catch-up"):
            numbers = ", ".join(str(run.row.number) for run in going)
            if desired.cron.concurrency == "forbid":
                self._event(project=entry.project, service=entry.service, kind="cron-skipped",
                            message=f"{entry.service}: tick skipped, run {numbers} still going (concurrency: "
                                    f"forbid)", details={"reason": "forbid", "running": [r.row.number for r in going]})
                return None
            if desired.cron.concurrency == "replace":
                for run in going:
                    await self._stop(run, desired, reason="replaced")
        return await self._spawn(entry, desired, trigger, attempt=attempt, note=note)

    async def _spawn(self, entry: Entry, desired: Desired, trigger: str, *, attempt: int,
                     note: str | None) -> RunRow:
        assert desired.cron is not None
        project, service = entry.project, entry.service
        key = f"{project}.{service}.cron.{uuid.uuid4().hex[:8]}"  # never a replica's `<project>.<service>.<N>.`
        log_dir = self._logs_dir / project / service
        row = self._store.add_run(project, service, trigger=trigger, attempt=attempt, started=self._now_wall(),
                                  key=key, release=desired.release, log_dir=str(log_dir))
        env = spawn_env(desired, {"STACKBLAZE_RUN": str(row.number), "STACKBLAZE_RUN_ATTEMPT": str(attempt)})
        meta = {"cron": True, "project": project, "service": service, "run": row.number, "attempt": attempt,
                "trigger": trigger, "release": desired.release, "config": desired.config}
        try:
            cwd = await self._workdir(project, key, desired)
            reply = await self._runner.call(
                "spawn", key=key, argv=start_argv(desired.start), env=env, cwd=cwd, log_path=row.log_path,
                log_max_bytes=desired.log_max_bytes, log_max_files=desired.log_max_files, meta=meta,
                **spawn_fields(desired))
        except UnavailableError as exc:
            if self._workdirs is not None:
                await asyncio.to_thread(self._workdirs.discard, project, key)
            now = self._now_wall()
            errno = getattr(exc, "errno", None)
            code = SHELL_EXIT_CODES.get(str(errno or ""))
            self._event(project=project, service=service, kind="cron-failed",
                        message=f"{service}: run {row.number} could not start: {exc}",
                        details={"run": row.number, "errno": errno, "exit_code": code, "trigger": trigger})
            finished = self._store.finish_run(project, service, row.number, ended=now, exit_code=code,
                                              exit_signal=None, reason="could not start")
            await self._after(entry, desired, finished or row, retry=True)
            return finished or row
        instance = reply["instance"]
        run = entry.runs[key] = Run(row, instance["pid"])
        if desired.cron.timeout is not None:
            self._arm_timeout(run, desired, desired.cron.timeout)
        why = f" ({note})" if note else ""
        again = f", attempt {attempt}" if attempt > 1 else ""
        self._event(project=project, service=service, kind="cron-run",
                    message=f"{service}: run {row.number} started ({trigger}{again}, pid {instance['pid']}, "
                            f"release {desired.release}){why}",
                    details={"run": row.number, "state": "started", "trigger": trigger, "attempt": attempt,
                             "pid": instance["pid"], "release": desired.release,
                             "schedule": describe(desired.cron.schedule, desired.cron.timezone)})
        return row

    def _arm_timeout(self, run: Run, desired: Desired, seconds: float) -> None:
        when = self._clock.time() + max(0.0, seconds)
        run.timeout = self._clock.call_at(when, lambda: self._later(self._time_out(run)))

    async def _time_out(self, run: Run) -> None:
        async with self._lock:
            if run.reason is not None or run.row.key not in self._all_keys():
                return
            desired = self._desired(run.row.project, run.row.service)
            await self._stop(run, desired, reason="timeout")

    async def _stop(self, run: Run, desired: Desired | None, *, reason: str) -> None:
        if run.reason is not None:
            return
        run.reason = reason
        if run.timeout is not None:
            run.timeout.cancel()
        sig = desired.stop_signal if desired else 15
        grace = (desired.shutdown_grace if desired else 30.0) * self._scale
        try:
            await self._runner.call("stop", key=run.row.key, signal=sig, grace=grace)
        except UnavailableError as exc:  # it ended meanwhile, or the runner is being replaced
            log.info("could not stop %s: %s", run.row.key, exc)

    # -- exits ---------------------------------------------------------------------------------------

    async def handle_exit(self, record: dict[str, Any]) -> None:
        meta = record.get("meta") or {}
        project, service, number = str(meta.get("project")), str(meta.get("service")), int(meta.get("run", 0))
        async with self._lock:
            entry = self._entries.get((project, service))
            run = entry.runs.pop(record["key"], None) if entry is not None else None
            if run is not None and run.timeout is not None:
                run.timeout.cancel()
            sig = record.get("exit_signal")
            reason = run.reason if run is not None else record.get("reason")
            row = self._store.finish_run(project, service, number, ended=record.get("exited_at") or self._now_wall(),
                                         exit_code=record.get("exit_code"),
                                         exit_signal=signal_name(sig) if sig else None, reason=reason)
            await self._runner.call("ack", keys=[record["key"]])
            if self._workdirs is not None:
                await asyncio.to_thread(self._workdirs.discard, project, record["key"])
            if row is None:
                return  # destroyed meanwhile
            desired = self._desired(project, service)
            words = "exit 0" if record.get("exit_code") == 0 else describe_exit_record(record)
            if reason == "timeout" and desired is not None and desired.cron is not None:
                words = f"stopped by its timeout ({desired.cron.timeout:g}s): {words}"
            elif reason == "replaced":
                words = f"replaced by a newer run (concurrency: replace): {words}"
            self._event(project=project, service=service, kind="cron-run",
                        message=f"{service}: run {number} finished: {words} after {row.duration or 0:.1f}s",
                        details={**row.to_dict(), "state": "finished", "ok": row.ok}, at=row.ended)
            if not row.ok and reason not in ("replaced", "stopped"):
                lines = await self._last_lines(project, service, number, row.started) if self._last_lines else []
                lines = lines[-LAST_LINES:]
                self._event(project=project, service=service, kind="cron-failed",
                            message=f"{service}: run {number} failed: {words}",
                            details={"run": number, "exit_code": row.exit_code, "exit_signal": row.exit_signal,
                                     "reason": reason, "attempt": row.attempt, "last_lines": lines})
            if entry is not None and desired is not None:
                await self._after(entry, desired, row, retry=reason is None)
            if entry is not None and not entry.runs and entry.timer is None and not _active(desired):
                self._entries.pop((project, service), None)
        await self._notify()

    async def _after(self, entry: Entry, desired: Desired, row: RunRow, *, retry: bool) -> None:
        """A run ended: retry a failure while retries are left, and keep the last `history` runs."""
        cron = desired.cron
        if cron is None:
            return
        if retry and not row.ok and row.attempt <= cron.retries and _active(desired):
            await self._spawn(entry, desired, "retry", attempt=row.attempt + 1,
                              note=f"run {row.number} failed; retry {row.attempt} of {cron.retries}")
        for dropped in self._store.prune_runs(entry.project, entry.service, keep=cron.history):
            await asyncio.to_thread(_remove_logs, Path(dropped.log_path))

    async def handle_runner_lost(self) -> None:
        """The runner died and its runs with it: each is recorded as ended (SIGKILL), not retried."""
        async with self._lock:
            for entry in self._entries.values():
                for key, run in list(entry.runs.items()):
                    del entry.runs[key]
                    if run.timeout is not None:
                        run.timeout.cancel()
                    self._store.finish_run(entry.project, entry.service, run.row.number, ended=self._now_wall(),
                                           exit_code=None, exit_signal="SIGKILL", reason="the runner died")
                    self._event(project=entry.project, service=entry.service, kind="cron-failed",
                                message=f"{entry.service}: run {run.row.number} ended: the runner died, and the "
                                        f"run with it", details={"run": run.row.number, "reason": "runner-lost"})
        await self._notify()

    # -- helpers -------------------------------------------------------------------------------------

    def _entry(self, project: str, service: str) -> Entry:
        entry = self._entries.get((project, service))
        if entry is None:
            entry = self._entries[(project, service)] = Entry(project, service)
        return entry

    def _all_keys(self) -> set[str]:
        return {key for entry in self._entries.values() for key in entry.runs}

    def _now_wall(self) -> float:
        return self._to_wall(self._clock.time())

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _workdir(self, project: str, key: str, desired: Desired) -> str:
        try:
            return await working_dir(self._workdirs, project=project, key=key, desired=desired)
        except OSError as exc:
            raise UnavailableError(f"its working directory could not be made: {exc}") from None


def _active(desired: Desired | None) -> bool:
    return (desired is not None and desired.kind == "cron" and desired.cron is not None
            and desired.replicas > 0 and not desired.suspended)


def _remove_logs(path: Path) -> None:
    """A pruned run's log and its rotations."""
    for each in [path, *path.parent.glob(path.name + ".*")]:
        try:
            each.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", each, exc)
