"""The autoscaler in the daemon: one loop per autoscaled local worker that reads its queues every `poll`
(platform time), calls decide(), applies a change of count, logs the decision and saves its state.

decide()'s docstring is the contract this follows. The count lives where a manual scale puts it (the
service's row), with the replica numbers that run (state/autoscale.py): a scale-down removes its victims
from that set before the engine stops them, so the restart policy never brings one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackblaze.engine.autoscale.busy import UNKNOWN, Busy, probe_busy, rq_busy
from stackblaze.engine.autoscale.celery_busy import CeleryHeartbeats
from stackblaze.engine.autoscale.decide import LoopState, decide, pause, resolve_target, resume, start
from stackblaze.engine.autoscale.decisions import Decision, DecisionLog, Fact, explain, reason
from stackblaze.engine.autoscale.readers import Reader, open_reader
from stackblaze.engine.autoscale.sampling import MeanWork, ZeroRead, sample_count, sample_until_wake, sample_work
from stackblaze.engine.autoscale.victims import ReplicaInfo, choose_victims
from stackblaze.engine.autoscale.work import ReadError, Work, redact
from stackblaze.engine.clock import ScaledClock, SystemClock
from stackblaze.errors import StackblazeError, UserError
from stackblaze.server.autoscale_spec import autoscale_of, daemon_url, fit_indexes
from stackblaze.server.autoscale_wake import Waker
from stackblaze.spec.autoscale import Autoscale
from stackblaze.spec.targets import LOCAL, split_key
from stackblaze.state.autoscale import AutoscaleRow, AutoscaleStore
from stackblaze.state.cron import CronStore
from stackblaze.state.store import ServiceRow

if TYPE_CHECKING:
    from stackblaze.server.control import Control

log = logging.getLogger("stackblaze.autoscale")
KEEP = 200  # decisions kept in memory and in the file after a trim
MAX_LOG_BYTES = 1 << 20
MIN_SLEEP = 0.01  # real seconds: a tiny time scale must not turn the loop into a busy one


@dataclass
class _Watch:
    """What one loop remembers between polls besides LoopState (which is saved)."""

    warnings: tuple[str, ...] = ()
    outage: bool = False


class Autoscaler:
    """Every autoscaled local worker's loop, started and stopped by `sync` (daemon start, deploy, stop,
    start, destroy)."""

    def __init__(self, control: Control) -> None:
        self._control = control
        self._loops: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._logs: dict[tuple[str, str], DecisionLog] = {}
        self._clock: ScaledClock | SystemClock | None = None

    @property
    def rows(self) -> AutoscaleStore:
        return AutoscaleStore.of(self._control.store)

    @property
    def clock(self) -> ScaledClock | SystemClock:
        """Platform time (STACKBLAZE_TIME_SCALE), continuous across daemon restarts: the cron clock's origin."""
        if self._clock is None:
            scale = self._control.settings.time_scale
            origin = CronStore.of(self._control.store).clock_origin()
            self._clock = ScaledClock(scale, origin=origin) if scale != 1 else SystemClock()
        return self._clock

    def lock(self, project: str, service: str) -> asyncio.Lock:
        return self._locks.setdefault((project, service), asyncio.Lock())

    def log_path(self, project: str, service: str) -> Path:
        return self._control.settings.logs_dir / project / f"{service}.autoscale.jsonl"

    def decisions(self, project: str, service: str) -> DecisionLog:
        key = (project, service)
        if key not in self._logs:
            path = self.log_path(project, service)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._logs[key] = DecisionLog.read(path, KEEP)
        return self._logs[key]

    # -- which loops run ---------------------------------------------------------------------------

    def sync(self) -> None:
        """A loop for each running autoscaled local worker, none for anything else; rows of services that
        are gone are dropped."""
        wanted = {(row.project, row.name) for row in self._control.store.services()
                  if row.running and autoscale_of(row.spec) is not None and split_key(row.project)[1] == LOCAL}
        for key, task in list(self._loops.items()):
            if key not in wanted or task.done():
                task.cancel()
                del self._loops[key]
        for key in wanted - set(self._loops):
            self._loops[key] = asyncio.create_task(self._run(*key), name=f"autoscale {key[0]}/{key[1]}")
        existing = {(row.project, row.name) for row in self._control.store.services()
                    if autoscale_of(row.spec) is not None}
        for key in set(self.rows.keys()) - existing:
            self.rows.delete(*key)
            self._logs.pop(key, None)

    async def close(self) -> None:
        tasks = list(self._loops.values())
        self._loops.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, project: str, service: str) -> None:
        loop = ServiceLoop(self, project, service)
        try:
            await loop.run()
        finally:
            await loop.close()

    # -- what control.py asks ----------------------------------------------------------------------

    def indexes(self, row: ServiceRow) -> tuple[int, ...] | None:
        """The replica numbers of an autoscaled local worker (Desired.indexes), fitted to its count."""
        if autoscale_of(row.spec) is None or split_key(row.project)[1] != LOCAL:
            return None
        found = self.rows.row(row.project, row.name)
        return fit_indexes(found.indexes if found else None, row.replicas)

    def state(self, project: str, service: str, current: int) -> AutoscaleRow:
        found = self.rows.row(project, service)
        if found is None:
            return AutoscaleRow(project, service, start(current, self.clock.time()).to_dict())
        return found

    async def manual_scale(self, row: ServiceRow, replicas: int) -> str | None:
        """A manual `scale` of an autoscaled worker pauses its loop (call it before the count is saved);
        returns the message to show, None for a service that is not autoscaled."""
        if autoscale_of(row.spec) is None or split_key(row.project)[1] != LOCAL:
            return None
        async with self.lock(row.project, row.name):
            found = self.state(row.project, row.name, row.replicas)
            loop_state = pause(LoopState.from_dict(found.state), by="scale", replicas=replicas,
                               now=self.clock.time())
            self.rows.save(replace(found, state=loop_state.to_dict(),
                                   indexes=fit_indexes(found.indexes, replicas)))
        return f"autoscaling paused: `stackblaze scale {row.name} --auto` resumes it"

    async def resume(self, project: str, service: str) -> dict[str, Any]:
        row = self._control.row(project, service)
        if autoscale_of(row.spec) is None:
            raise UserError(f"scale {service} --auto: {service} has no autoscale: in its spec (e.g. autoscale: "
                            "{min: 0, max: 8, queues: {kind: rq, url: ${{cache.REDIS_URL}}, names: [default]}})")
        if split_key(project)[1] != LOCAL:
            raise UserError(f"scale {service} --auto: on a cluster KEDA scales it (deploy again to resume)")
        async with self.lock(project, service):
            found = self.state(project, service, row.replicas)
            was = LoopState.from_dict(found.state)
            loop_state = resume(was, current=row.replicas, now=self.clock.time())
            self.rows.save(replace(found, state=loop_state.to_dict()))
        if was.paused is not None:
            self._control.event(project=project, service=service, kind="autoscale",
                                message=f"{service}: autoscaling resumed at {row.replicas} replicas",
                                details={"resumed": True, "replicas": row.replicas})
        self.sync()
        return {"service": service, "resumed": was.paused is not None, "replicas": row.replicas}

    # -- what the API shows ------------------------------------------------------------------------

    def view(self, project: str, row: ServiceRow) -> dict[str, Any] | None:
        """The `autoscale` entry of `ps --json` and of `autoscale status`."""
        spec = autoscale_of(row.spec)
        if spec is None:
            return None
        found = self.rows.row(project, row.name)
        loop_state = LoopState.from_dict(found.state) if found else None
        last = next(iter(self.decisions(project, row.name).last(1)), None)
        return {"min": spec.min, "max": spec.max, "kind": spec.queues.kind, "queues": list(spec.queues.names),
                "current": row.replicas if row.running else 0, "desired": last.desired if last else None,
                "paused": loop_state is not None and loop_state.paused is not None,
                "indexes": list(self.indexes(row) or []),
                "draining": [d["replica"] for d in (found.drains if found else ())],
                "last_rule": last.rule if last else None, "last_reason": reason(last) if last else None,
                "last_at": last.at if last else None, "work": last.work if last else None}

    def why(self, project: str, service: str, count: int) -> dict[str, Any]:
        row = self._control.row(project, service)
        if autoscale_of(row.spec) is None:
            raise UserError(f"autoscale why {service}: {service} has no autoscale: in its spec (e.g. autoscale: "
                            "{min: 0, max: 8, queues: {kind: rq, url: ${{cache.REDIS_URL}}, names: [default]}})")
        decisions = self.decisions(project, service).last(count)
        kinds = ("autoscale", "autoscale-error", "autoscale-warning", "autoscale-push", "drain-killed")
        events = [e.to_dict() for e in self._control.store.events(project=project, service=service, limit=1000)
                  if e.kind in kinds][-count:]
        return {"service": service, "lines": explain(decisions), "decisions": [d.to_dict() for d in decisions],
                "events": events, "autoscale": self.view(project, row)}


class ServiceLoop:
    def __init__(self, autoscaler: Autoscaler, project: str, service: str) -> None:
        self._scaler = autoscaler
        self._control = autoscaler._control
        self.project, self.service = project, service
        self._reader: Reader | None = None
        self._url: str | None = None
        self._watch = _Watch()
        self._closing: asyncio.Task[None] | None = None
        self._next: float | None = None  # when a poll at 0 a push ended early, the next poll's start (platform)
        self._waker = Waker(lambda message, details: self._control.event(
            project=project, service=service, kind="autoscale-push", message=f"{service}: {message}",
            details=details))
        self._heartbeats = CeleryHeartbeats()  # Celery's busy state (kind celery), only while it has replicas

    async def close(self) -> None:
        await self._waker.close()
        await self._heartbeats.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.close()
            self._reader = None

    async def run(self) -> None:
        clock, scale = self._scaler.clock, self._control.settings.time_scale
        found = self._scaler.rows.row(self.project, self.service)
        self._watch.outage = found is not None and int(found.state.get("failures") or 0) > 0
        push: str | None = None
        while True:
            row = self._control.store.service(self.project, self.service)
            spec = autoscale_of(row.spec) if row is not None else None
            if row is None or spec is None or not row.running:
                return
            began, self._next = clock.time(), None
            try:
                await self.tick(spec, push=push or None)
                self._follow_push(spec)
                self._follow_heartbeats(spec)
            except asyncio.CancelledError:
                raise
            except (StackblazeError, OSError) as exc:  # a full disk, a gone engine: log, try again next poll
                log.error("%s/%s: autoscale poll failed: %s", self.project, self.service, exc)
            except Exception:
                log.exception("%s/%s: autoscale poll failed", self.project, self.service)
            wait = max(0.0, (began + spec.poll if self._next is None else self._next) - clock.time()) * scale
            push = await self._waker.sleep(max(MIN_SLEEP, wait))  # the poll's sleep, cut short by a push

    def _follow_push(self, spec: Autoscale) -> None:
        """A push listener while the service is at 0 and not paused (autoscale_wake.py), none otherwise."""
        if self._url is not None:
            self._waker.follow(replace(spec.queues, url=self._url), own="${{" in spec.queues.url,
                               listen=self._asleep(spec))

    def _asleep(self, spec: Autoscale) -> bool:
        """At 0 replicas, not paused, min 0: only work can wake it (a push may say so first)."""
        row = self._control.store.service(self.project, self.service)
        found = self._scaler.rows.row(self.project, self.service)
        paused = found is not None and found.state.get("paused") is not None
        return row is not None and row.running and row.replicas == 0 and not paused and spec.min == 0

    def _follow_heartbeats(self, spec: Autoscale) -> None:
        """Celery workers' heartbeats heard while the service has replicas (celery_busy.py); replicas that send
        none (--without-heartbeat) said once in an `autoscale-warning`."""
        row = self._control.store.service(self.project, self.service)
        on = spec.queues.kind == "celery" and row is not None and row.running and row.replicas > 0
        self._heartbeats.follow(self._url if on else None)
        if not on or self._heartbeats.listening_since is None:
            return
        status = [r for r in self._control.engine_for(self.project).status(self.project, self.service)
                  if r["state"] == "running" and r.get("pid")]
        warning = self._heartbeats.silent(self.service, {r["replica"]: r["pid"] for r in status},
                                          {r["replica"]: float(r.get("started_at") or 0) for r in status})
        if warning is not None:
            self._control.event(project=self.project, service=self.service, kind="autoscale-warning",
                                message=f"{self.service}: {warning}", details={"warnings": [warning]})

    def _open(self, spec: Autoscale) -> Reader:
        url = daemon_url(self._control, self.project, spec.queues.url)
        if self._reader is None or url != self._url:
            if self._reader is not None:
                self._closing = asyncio.create_task(self._reader.close())  # the old URL's connection
            self._reader = open_reader(replace(spec.queues, url=url))
            self._url = url
        return self._reader

    async def _read(self, spec: Autoscale, push: str | None) -> Work | MeanWork | ZeroRead:
        """Asleep at 0: the reads spread over this poll until one shows waiting work or a push asks (sampling.py's
        `sample_until_wake`), that read alone; with replicas, the mean of the reads spread over this poll
        (sampling.py says why), the last (count - 1) / count of a poll from now; one read otherwise (at 0 but
        paused or with min >= 1, or a poll too short to sample)."""
        reader = self._open(spec)
        row = self._control.store.service(self.project, self.service)
        scale, clock = self._control.settings.time_scale, self._scaler.clock
        count = sample_count(spec.poll, scale, MIN_SLEEP)
        if self._asleep(spec):
            zero = await sample_until_wake(lambda: reader.read(time.time()), poll=spec.poll, count=count,
                                           activation=spec.activation, clock=clock.time, push=push,
                                           sleep=lambda seconds: self._waker.sleep(seconds * scale))
            if zero.push is not None and not zero.woke(spec.activation):
                # A push that woke nothing ended the poll early: the reads go on at their pace from here, not
                # after a whole poll (which would leave a poll-only wake a poll late again).
                self._next = clock.time() + spec.poll / count
            return zero
        if row is None or row.replicas == 0 or count == 1:
            return await reader.read(time.time())
        return await sample_work(lambda: reader.read(time.time()), poll=spec.poll, count=count,
                                 clock=clock.time, sleep=lambda seconds: asyncio.sleep(seconds * scale))

    async def tick(self, spec: Autoscale, push: str | None = None) -> None:
        """One evaluation; `push`: what the broker pushed to ask for it (a hint: the read still decides)."""
        reading: Any
        facts: dict[str, Fact] = {}
        try:
            reading = await self._read(spec, push)
            if isinstance(reading, ZeroRead):  # which read of the poll at 0 decided, and the push that asked
                facts, push, reading = {"read": reading.read, "reads": reading.reads}, reading.push, reading.work
        except (ReadError, UserError) as exc:
            reading = exc
        except (OSError, ValueError) as exc:  # what a reader did not translate is still a failed read
            reading = ReadError.reading(self._url or spec.queues.url, exc)
        scaler, store = self._scaler, self._control.store
        async with scaler.lock(self.project, self.service):
            row = store.service(self.project, self.service)
            if row is None or not row.running or autoscale_of(row.spec) is None:
                return
            await self._follow_drains(spec, row)
            found = scaler.state(self.project, self.service, row.replicas)
            desired = self._control.desired(self.project, self.service)
            target = resolve_target(spec, desired.env if desired else {})[0]
            now = scaler.clock.time()
            decision, loop_state = decide(spec, LoopState.from_dict(found.state), reading, current=row.replicas,
                                          target=target, now=now)
            decision = replace(decision, at=scaler.clock.to_wall(now) if isinstance(scaler.clock, ScaledClock)
                               else now, facts={**decision.facts, **facts, **({"push": push} if push else {})})
            self._report_reading(spec, reading, decision)
            found = replace(found, state=loop_state.to_dict())
            changed = decision.desired != row.replicas
            if changed:
                found = await self._apply(spec, row, found, decision)
            else:
                scaler.rows.save(found)
            log_ = scaler.decisions(self.project, self.service)
            log_.append(decision)
            log_.trim(MAX_LOG_BYTES)
        if changed:
            await self._control.engine_for(self.project).reconcile(self.project, self.service)

    async def _apply(self, spec: Autoscale, row: ServiceRow, found: AutoscaleRow, decision: Decision
                     ) -> AutoscaleRow:
        """Save the new count and the replica numbers that run (victims out first), with the loop's state, in
        one transaction; say it in an `autoscale` event."""
        indexes = fit_indexes(found.indexes, row.replicas)
        to = decision.desired
        drains = list(found.drains)
        status = self._control.engine_for(self.project).status(self.project, self.service)
        busy_of: dict[int, Busy] = {}
        victims: list[int] = []
        if to > len(indexes):
            taken = set(indexes) | {r["replica"] for r in status if r["state"] == "stopping"}
            free = (n for n in range(1, 10_000) if n not in taken)
            indexes = tuple(sorted((*indexes, *(next(free) for _ in range(to - len(indexes))))))
        else:
            busy_of = await self._busy(spec, status, indexes)
            infos = [ReplicaInfo(n, busy_of.get(n, UNKNOWN).busy) for n in indexes]
            victims = choose_victims(infos, len(indexes) - to, spec.scale_down.prefer)
            indexes = tuple(n for n in indexes if n not in victims)
            pids = {r["replica"]: r.get("pid") for r in status}
            last_event = self._last_event_id()
            for n in victims:
                busy = busy_of.get(n, UNKNOWN)
                drains.append({"replica": n, "pid": pids.get(n), "busy": busy.busy, "jobs": busy.jobs,
                               "ids": list(busy.ids), "source": busy.source, "since_event": last_event,
                               "at": time.time()})
        found = replace(found, indexes=indexes, drains=tuple(drains))
        store = self._control.store
        with store.transaction():
            store.save_service(replace(row, replicas=to))
            self._scaler.rows.save(found)
        stopping = ""
        if victims:
            words = [f"{self.service}.{n}" + ("" if busy_of.get(n, UNKNOWN).busy is None else
                                             " (busy)" if busy_of[n].busy else " (idle)") for n in victims]
            stopping = "; stopping " + ", ".join(words)
        self._control.event(project=self.project, service=self.service, kind="autoscale",
                            message=f"{self.service} autoscaled {row.replicas} -> {to}: {reason(decision)}{stopping}",
                            details={"from": row.replicas, "to": to, "rule": decision.rule, "work": decision.work,
                                     "victims": victims, "busy": {str(n): b.to_dict() for n, b in busy_of.items()}})
        return found

    async def _busy(self, spec: Autoscale, status: list[dict[str, Any]], indexes: Iterable[int]
                    ) -> dict[int, Busy]:
        """The busy state of the running replicas among `indexes`: from RQ's worker hashes or Celery's heartbeats,
        else the probe."""
        pids = {r["replica"]: r["pid"] for r in status if r.get("pid") and r["replica"] in set(indexes)}
        found: dict[int, Busy] = {}
        if spec.queues.kind == "rq" and pids and self._url:
            try:
                found = await rq_busy(self._url, pids)
            except Exception as exc:  # busy data is a preference: unknown, never a failed poll
                log.warning("%s/%s: RQ worker states unreadable: %s", self.project, self.service, exc)
        elif spec.queues.kind == "celery" and pids:
            found = self._heartbeats.busy(pids)
        if spec.busy_probe:
            desired = self._control.desired(self.project, self.service)
            if desired is not None:
                missing = [n for n in pids if n not in found]
                answers = await asyncio.gather(*(probe_busy(
                    spec.busy_probe, env={**desired.env, "STACKBLAZE_SERVICE": self.service,
                                          "STACKBLAZE_REPLICA": str(n)},
                    cwd=desired.cwd, user=desired.user) for n in missing))
                found.update(zip(missing, answers, strict=True))
        return found

    def _last_event_id(self) -> int:
        events = self._control.store.events(project=self.project, limit=1)
        return events[-1].id if events else 0

    async def _follow_drains(self, spec: Autoscale, row: ServiceRow) -> None:
        """Each victim still stopping: its busy data refreshed (what a kill would cost); each one gone: a
        `drain-killed` event when the grace ran out and SIGKILL ended it."""
        found = self._scaler.rows.row(self.project, self.service)
        if found is None or not found.drains:
            return
        status = self._control.engine_for(self.project).status(self.project, self.service)
        stopping = {r["replica"]: r for r in status if r["state"] == "stopping"}
        fresh = await self._busy(spec, [r for r in status if r["replica"] in stopping], stopping) \
            if stopping else {}
        left = []
        for drain in found.drains:
            exit_event = self._exit_of(drain)
            if exit_event is None and drain["replica"] in stopping:
                busy = fresh.get(drain["replica"])
                if busy is not None and busy.source != "unknown":
                    drain = {**drain, "busy": busy.busy, "jobs": busy.jobs, "ids": list(busy.ids),
                             "source": busy.source}
                left.append(drain)
                continue
            if exit_event is not None and exit_event.get("killed_after_grace"):
                self._report_kill(drain, exit_event, row)
        if len(left) != len(found.drains) or left != list(found.drains):
            self._scaler.rows.save(replace(found, drains=tuple(left)))

    def _exit_of(self, drain: Mapping[str, Any]) -> dict[str, Any] | None:
        for event in self._control.store.events(project=self.project, service=self.service,
                                                after_id=int(drain.get("since_event") or 0), limit=1000):
            if event.kind == "exit" and event.replica == drain["replica"] and \
                    (drain.get("pid") is None or event.details.get("pid") == drain["pid"]):
                return dict(event.details)
        return None

    def _report_kill(self, drain: Mapping[str, Any], exit_event: Mapping[str, Any], row: ServiceRow) -> None:
        jobs = drain.get("jobs")
        grace = float(exit_event.get("killed_after_grace") or 0) / self._control.settings.time_scale
        ids = [str(i) for i in drain.get("ids") or ()]
        held = "an unknown number of jobs" if jobs is None or (jobs == 0 and drain.get("busy") is None) else \
            f"{jobs} job{'s' if jobs != 1 else ''}" + (f" ({', '.join(ids)})" if ids else "")
        name = f"{self.service}.{drain['replica']}"
        self._control.event(
            project=self.project, service=self.service, replica=drain["replica"], kind="drain-killed",
            message=f"{name} killed after its {grace:g}s shutdown_grace during an autoscale drain, holding {held}"
                    f" (busy data: {drain.get('source') or 'unknown'})",
            details={"replica": drain["replica"], "pid": drain.get("pid"), "jobs": jobs, "job_ids": ids,
                     "source": drain.get("source"), "grace": grace})

    def _report_reading(self, spec: Autoscale, reading: object, decision: Decision) -> None:
        """Broker errors once per outage (and when it is back), warnings once each time they change."""
        watch, event = self._watch, self._control.event
        broker = redact(self._url or spec.queues.url)
        if isinstance(reading, Exception):
            if not watch.outage:
                watch.outage = True
                event(project=self.project, service=self.service, kind="autoscale-error",
                      message=f"{self.service}: cannot read its queues ({reading}); holding {decision.current} "
                              "replicas (never down, never to zero) until the broker answers",
                      details={"error": str(reading), "broker": broker, "held": decision.current})
            return
        if watch.outage:
            watch.outage = False
            event(project=self.project, service=self.service, kind="autoscale-error",
                  message=f"{self.service}: its queues are readable again ({broker}); autoscaling goes on",
                  details={"recovered": True, "broker": broker})
        warnings = tuple(decision.warnings)
        if warnings != watch.warnings:
            watch.warnings = warnings
            if warnings:
                event(project=self.project, service=self.service, kind="autoscale-warning",
                      message=f"{self.service}: " + "; ".join(warnings),
                      details={"warnings": list(warnings), "queues": list(spec.queues.names)})
