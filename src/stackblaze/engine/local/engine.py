"""The local engine as the daemon starts and ends it: a runner process and the supervisor that drives it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.local.runner_client import RunnerClient
from stackblaze.engine.local.sampler import Sampler, Target
from stackblaze.engine.local.slots import StatusStore
from stackblaze.engine.local.supervisor import Supervisor
from stackblaze.engine.protocol import Engine, EngineHooks, UsageSink
from stackblaze.engine.workdirs import Workdirs
from stackblaze.errors import StackblazeError
from stackblaze.settings import Settings

log = logging.getLogger(__name__)


class LocalEngine:
    def __init__(self, settings: Settings, runner: RunnerClient, supervisor: Supervisor,
                 sampler: Sampler | None = None) -> None:
        self._settings = settings
        self._runner = runner
        self._supervisor = supervisor
        self._sampling: asyncio.Task[None] | None = None
        if sampler is not None:
            supervisor.usage_of = sampler.figures
            self._sampling = asyncio.create_task(sampler.run())

    @property
    def engine(self) -> Engine:
        return self._supervisor

    async def stop_all(self) -> None:
        """Every worker and the runner stop (signal, grace, kill); nothing is restarted meanwhile."""
        self._supervisor.halt()
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
                     usage: UsageSink | None = None) -> LocalEngine:
    """Connect to this home's runner (starting one), adopt what it runs, and reconcile every service; then
    sample every replica's CPU and memory into `usage`."""
    runner = RunnerClient(settings.runner_socket, log_file=settings.home / "runner.log")
    await runner.connect()
    supervisor = Supervisor(
        runner=runner, store=store, policy=BackoffPolicy(scale=settings.time_scale), logs_dir=settings.logs_dir,
        desired=hooks.desired, services=hooks.services, record_event=hooks.record_event,
        last_lines=hooks.last_lines, rollout_failed=hooks.rollout_failed,
        workdirs=Workdirs(settings.releases_dir),
    )
    await supervisor.start()

    def targets() -> list[Target]:
        return [Target(slot.project, slot.service, slot.replica, live.key, live.pid, live.started_at)
                for slot, live in supervisor.shown()]
    sampler = Sampler(targets=targets, sink=usage, scale=settings.time_scale)
    return LocalEngine(settings, runner, supervisor, sampler)
