"""The local engine as the control plane sees it: the supervisor's replicas and the scheduler's cron runs
behind one Engine (and CronEngine), and the runner's exits routed to whichever started the process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stackblaze.engine.cron import RunRow
from stackblaze.engine.local.cron import Scheduler
from stackblaze.engine.local.supervisor import LocalLogs, Supervisor
from stackblaze.engine.protocol import Desired, ReplicaStatus, RolloutRecord, RolloutView


def replicas_only(desired: Callable[[str, str], Desired | None]) -> Callable[[str, str], Desired | None]:
    """What the supervisor is told of a service: a cron service has no replica to keep (None)."""
    def only(project: str, service: str) -> Desired | None:
        found = desired(project, service)
        return None if found is not None and found.kind == "cron" else found
    return only


class LocalServices:
    def __init__(self, supervisor: Supervisor, scheduler: Scheduler) -> None:
        self.supervisor = supervisor
        self.scheduler = scheduler

    def route(self, runner: Any) -> None:
        """Exits of cron runs (meta.cron) to the scheduler, the others to the supervisor; a lost runner to
        both (the supervisor first: it starts the new runner)."""
        async def on_exit(record: dict[str, Any]) -> None:
            if (record.get("meta") or {}).get("cron"):
                await self.scheduler.handle_exit(record)
            else:
                await self.supervisor.handle_exit(record)

        async def on_lost() -> None:
            await self.supervisor.handle_runner_lost()
            await self.scheduler.handle_runner_lost()
        runner.on_exit = on_exit
        runner.on_lost = on_lost

    # -- Engine --------------------------------------------------------------------------------------

    async def reconcile(self, project: str, service: str, *, fresh: bool = False) -> None:
        await self.supervisor.reconcile(project, service, fresh=fresh)
        await self.scheduler.reconcile(project, service)

    def status(self, project: str, service: str | None = None) -> list[ReplicaStatus]:
        return self.supervisor.status(project, service)

    def rollout(self, project: str, service: str) -> RolloutView | None:
        return self.supervisor.rollout(project, service)

    async def wait_rollout(self, rollout: RolloutView, *, on_change: Callable[[RolloutRecord], None],
                           timeout: float | None = None) -> RolloutRecord:
        return await self.supervisor.wait_rollout(rollout, on_change=on_change, timeout=timeout)

    async def wait_stopped(self, project: str, service: str | None = None, timeout: float = 660.0) -> None:
        await self.supervisor.wait_stopped(project, service, timeout)
        await self.scheduler.wait_stopped(project, service, timeout)

    def forget(self, project: str, service: str | None = None) -> None:
        self.supervisor.forget(project, service)
        self.scheduler.forget(project, service)

    @property
    def logs(self) -> LocalLogs:
        return self.supervisor.logs

    # -- CronEngine ----------------------------------------------------------------------------------

    async def run_now(self, project: str, service: str) -> RunRow:
        return await self.scheduler.run_now(project, service)

    def next_run(self, project: str, service: str) -> float | None:
        return self.scheduler.next_run(project, service)

    def active_runs(self, project: str, service: str) -> list[int]:
        return self.scheduler.active_runs(project, service)
