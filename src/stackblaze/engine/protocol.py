"""The seam between the control plane and an engine: what the server asks of any engine, and what it hears back.

The server imports this module and `engine.factory`, never an engine's own modules, so the local engine and
the Kubernetes engine can stand behind the same calls. Records stay plain JSON-ready dicts (what the API
serialises); their shapes are named here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stackblaze.spec.rollout import Rolling

ReplicaStatus = dict[str, Any]  # service, replica, state, release, pid, started_at, uptime, restart_count, ...
RolloutRecord = dict[str, Any]  # service, state, release, from_release, reason, exit, counts (see Rollout.record)
EventSink = Callable[..., None]  # record_event(project=, kind=, message=, service=, replica=, details=, at=)


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
    min_ready: float = 10.0  # seconds a new replica must run without exiting to be available
    progress_deadline: float = 600.0
    rolling: Rolling = field(default_factory=Rolling)
    # Who the replicas run as, for the runner's spawn: {"uid", "gid", "groups", "name"}; None: the runner's user.
    user: dict[str, Any] | None = None



class RolloutView(Protocol):
    """What the control plane reads of a rollout an engine gave up on (the local engine's Rollout)."""

    @property
    def project(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def release(self) -> int: ...
    @property
    def from_release(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def restored(self) -> bool: ...


class Engine(Protocol):
    """Runs each service as its Desired state says; the control plane calls `reconcile` after every change
    of that state (deploy, scale, env, stop/start, rollback, destroy)."""

    async def reconcile(self, project: str, service: str, *, fresh: bool = False) -> None: ...

    def status(self, project: str, service: str | None = None) -> list[ReplicaStatus]: ...

    def rollout(self, project: str, service: str) -> RolloutView | None: ...

    async def wait_rollout(self, rollout: RolloutView, *, on_change: Callable[[RolloutRecord], None],
                           timeout: float | None = None) -> RolloutRecord: ...

    async def wait_stopped(self, project: str, service: str | None = None, timeout: float = 660.0) -> None: ...

    def forget(self, project: str, service: str | None = None) -> None: ...


@dataclass(frozen=True)
class EngineHooks:
    """What an engine asks of the control plane."""

    desired: Callable[[str, str], Desired | None]
    services: Callable[[], list[tuple[str, str]]]
    record_event: EventSink
    last_lines: Callable[[str, str, int, float], Awaitable[list[str]]]
    rollout_failed: Callable[[RolloutView], None]


class RunningEngine(Protocol):
    """An engine the daemon started, and how it ends: `stop_all` stops every worker (`daemon stop --all`),
    `close` lets go of the engine and leaves the workers running."""

    @property
    def engine(self) -> Engine: ...

    async def stop_all(self) -> None: ...

    async def close(self) -> None: ...
