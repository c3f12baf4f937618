"""The local engine as the daemon starts and ends it: a runner process and the supervisor that drives it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.clock import ScaledClock, SystemClock
from stackblaze.engine.cron import RunStore
from stackblaze.engine.local.cron import Scheduler
from stackblaze.engine.local.runner_client import RunnerClient
from stackblaze.engine.local.sampler import Sampler, Target
from stackblaze.engine.local.services import LocalServices, replicas_only
from stackblaze.engine.local.slots import StatusStore
from stackblaze.engine.local.supervisor import Supervisor
from stackblaze.engine.protocol import Engine, EngineHooks, UsageSink
from stackblaze.engine.workdirs import Workdirs
from stackblaze.errors import StackblazeError
from stackblaze.settings import Settings

log = logging.getLogger(__name__)


class LocalEngine:
    def __init__(self, settings: Settings, runner: RunnerClient, supervisor: Supervisor,
                 sampler: Sampler | None = None, services: LocalServices | None = None) -> None:
        self._settings = settings
        self._runner = runner
        self._supervisor = supervisor
        self._services = services  # the supervisor and the cron scheduler behind one Engine
        self._sampling: asyncio.Task[None] | None = None
        if sampler is not None:
            supervisor.usage_of = sampler.figures
            self._sampling = asyncio.create_task(sampler.run())

    @property
    def engine(self) -> Engine:
        return self._services if self._services is not None else self._supervisor

    async def stop_all(self) -> None:
        """Every worker and the runner stop (signal, grace, kill); nothing is restarted meanwhile."""
        self._supervisor.halt()
        if self._services is not None:
            self._services.scheduler.halt()
        await self._stop_sampling()
        try:
            await self._runner.call("shutdown", grace=30.0 * self._settings.time_scale)
            await asyncio.wait_for(self._runner_gone(), timeout=660)
        except (TimeoutError, StackblazeError, OSError) as exc:
            log.error("could not stop the runner: %s", exc)

    async def close(self) -> None:
        await self._stop_sampling()
        await self._runner.close()

    async def _stop_sampling(self) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampling
            self._sampling = None

    async def _runner_gone(self) -> None:
        while self._settings.runner_socket.exists():
            await asyncio.sleep(0.05)


async def open_local(settings: Settings, *, store: StatusStore, hooks: EngineHooks,
                     usage: UsageSink | None = None, runs: RunStore | None = None) -> LocalEngine:
    """Connect to this home's runner (starting one), adopt what it runs, and reconcile every service; then
    sample every replica's CPU and memory into `usage`."""
    runner = RunnerClient(settings.runner_socket, log_file=settings.home / "runner.log")
    await runner.connect()
    supervisor = Supervisor(
        runner=runner, store=store, policy=BackoffPolicy(scale=settings.time_scale), logs_dir=settings.logs_dir,
        desired=replicas_only(hooks.desired), services=hooks.services, record_event=hooks.record_event,
        last_lines=hooks.last_lines, rollout_failed=hooks.rollout_failed,
        workdirs=Workdirs(settings.releases_dir),
    )
    services = None
    if runs is not None:
        # Cron ticks on platform time (ScaledClock under STACKBLAZE_TIME_SCALE), from the home's stored origin.
        scale = settings.time_scale
        clock = ScaledClock(scale, origin=runs.clock_origin()) if scale != 1 else SystemClock()
        scheduler = Scheduler(
            runner=runner, runs=runs, clock=clock, logs_dir=settings.logs_dir, desired=hooks.desired,
            services=hooks.services, record_event=hooks.record_event, scale=scale,
            to_wall=clock.to_wall if isinstance(clock, ScaledClock) else (lambda t: t),
            last_lines=hooks.last_lines, workdirs=Workdirs(settings.releases_dir))
        services = LocalServices(supervisor, scheduler)
        services.route(runner)
    await supervisor.start()
    if services is not None:
        await services.scheduler.start()

    def targets() -> list[Target]:
        return [Target(slot.project, slot.service, slot.replica, live.key, live.pid, live.started_at)
                for slot, live in supervisor.shown()]
    sampler = Sampler(targets=targets, sink=usage, scale=settings.time_scale)
    return LocalEngine(settings, runner, supervisor, sampler, services)
