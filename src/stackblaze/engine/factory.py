"""Which engine runs a home's services: the one place the server reaches an engine's own modules through."""

from __future__ import annotations

from stackblaze.engine.cron import RunStore
from stackblaze.engine.local.engine import open_local
from stackblaze.engine.local.slots import StatusStore
from stackblaze.engine.protocol import EngineHooks, RunningEngine, UsageSink
from stackblaze.settings import Settings
from stackblaze.spec.targets import Target


async def open_engine(settings: Settings, *, store: StatusStore, hooks: EngineHooks,
                      usage: UsageSink | None = None, runs: RunStore | None = None) -> RunningEngine:
    """The embedded local engine (the only kind so far; a Kubernetes target will be chosen here); it samples
    its replicas' CPU and memory into `usage`; cron services' runs are kept in `runs` (None: none run)."""
    return await open_local(settings, store=store, hooks=hooks, usage=usage, runs=runs)


async def open_target(settings: Settings, target: Target, *, hooks: EngineHooks) -> RunningEngine:
    """The engine of a kubernetes or fake target; the Kubernetes modules load only when one is used."""
    from stackblaze.engine.kubernetes.engine import open_kubernetes

    return await open_kubernetes(settings, target, hooks=hooks)
