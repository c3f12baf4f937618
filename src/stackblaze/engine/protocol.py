"""The seam between the control plane and an engine: what the server asks of any engine, and what it hears back.

The server imports this module and `engine.factory`, never an engine's own modules, so the local engine and
the Kubernetes engine can stand behind the same calls. Records stay plain JSON-ready dicts (what the API
serialises); their shapes are named here as TypedDicts (DESIGN.md's "one vocabulary").

The verbs: the control plane records what should run (a deploy's release, a scale, a restart's new
generation, stop/start, a rollback) and calls `Engine.reconcile`; each engine turns the difference into its
own actions (the local engine starts and signals processes; the Kubernetes engine server-side applies, or
patches /scale, or stamps the restart annotation). `status` answers `ps`; `rollout`/`wait_rollout` a
deploy's wait; events come back through `EngineHooks.record_event` into the one event store (the
Kubernetes engine also imports the cluster's Events there), so `events` reads one place for both.

Logs: every engine stores each replica's output as CRI lines (`<RFC 3339> <stream> <F|P> <line>`) in
`<logs_dir>/<project>/<service>/<replica>.log`, rotated as `<replica>.log.1` ... The local engine's runner writes
them; the Kubernetes engine pumps each pod's log API stream into them as it arrives (a pod takes the
lowest free replica number of its service). `logs`, crash tails and drains read them through the
engine's LogSource.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, Protocol, TypedDict

from stackblaze.spec.autoscale import Autoscale
from stackblaze.spec.cron import Cron
from stackblaze.spec.rollout import Rolling


class ExitRecord(TypedDict, total=False):
    """How a replica's last run ended, in the words both engines use (engine/exits.py words the meaning)."""

    code: int | None  # exit code, or None when a signal ended it
    signal: str | None  # "SIGKILL"
    meaning: str  # "exit 3: the process reported an error", "killed by SIGKILL (not by stackblaze)"
    reason: str | None  # Kubernetes' terminated reason: "OOMKilled", "Error", "Completed"
    at: float  # when it ended (Unix time)
    ran_for: float  # seconds it had run
    release: int | None
    last_lines: list[str]
    pid: int | None  # local engine
    killed_after_grace: bool | None
    oom_killed: bool


class ReplicaStatusRecord(TypedDict, total=False):
    """One replica, as `ps --json` and the API show it, whichever engine runs it."""

    service: str
    replica: int  # 1..N
    state: str  # starting | running | waiting | stopping | stopped
    release: int | None
    pid: int | None  # local engine
    pod: str | None  # Kubernetes engine
    image: str | None  # Kubernetes engine: the pod's image, by digest
    started_at: float | None
    uptime: float | None
    restart_count: int
    last_exit: ExitRecord | None
    next_restart_at: float | None
    waiting_reason: str | None  # "crash loop", "CrashLoopBackOff", "ImagePullBackOff" ...
    cpu: float | None  # percent of one core over the last sample interval; None: not known (Kubernetes: n/a)
    memory: int | None  # bytes (cgroup memory.current / memory.usage_in_bytes, else the tree's VmRSS)


class EventRecord(TypedDict):
    """One event (state/store.EventRow.to_dict): what `events --json` prints."""

    id: int
    at: float
    project: str
    service: str | None
    replica: int | None
    kind: str  # deploy, build, start, exit, restart-scheduled, scale, env, rollout-failed, drain-failed ...
    message: str
    details: dict[str, Any]


class LogLine(TypedDict):
    """One log record (logs/record.py LogRecord.to_dict, plus level/message/fields for a JSON line)."""

    at: str  # RFC 3339, UTC, microseconds
    service: str
    replica: int
    stream: str  # stdout | stderr
    line: str
    partial: bool
    level: NotRequired[str | None]
    message: NotRequired[str | None]
    fields: NotRequired[dict[str, Any]]


USAGE_INTERVAL = 10.0  # seconds between two samples of a replica's resource use (× STACKBLAZE_TIME_SCALE)
USAGE_MIN_INTERVAL = 0.05  # real seconds: a tiny time scale must not turn sampling into a busy loop
USAGE_RETENTION = 24 * 3600.0  # seconds of samples kept (× time scale): 8,640 per replica at most


def usage_interval(scale: float) -> float:
    return max(USAGE_MIN_INTERVAL, USAGE_INTERVAL * scale)


class UsageSample(TypedDict):
    """One sample of one replica's resource use (engine/local/sampler.py), as the usage route serves it."""

    project: str
    service: str
    replica: int
    at: float  # Unix time
    cpu: float | None  # percent of one core since the previous sample
    memory: int | None  # bytes


class UsageSink(Protocol):
    """Where an engine's resource samples are kept (state/usage.py), bounded: prune drops those before
    `before` (Unix time) and says how many."""

    def add_usage(self, samples: list[UsageSample]) -> None: ...

    def prune_usage(self, before: float) -> int: ...


# The TypedDicts above document the shapes; the engines build and return plain dicts (with a few more keys
# the CLI reads, e.g. crash_loop, incoming), so no static check ties them to these declarations yet.
ReplicaStatus = dict[str, Any]  # a ReplicaStatusRecord, as the engines build it (mutable, JSON-ready)
# What every replica's env has unless the user's env sets it, on both engines: worker logs are only useful live.
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1"}
RolloutRecord = dict[str, Any]  # service, state, release, from_release, reason, exit, counts (engine/rollouts.py)
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
    # Kubernetes-family targets: `project` is the store's key ("acme@prod"); these say what the cluster sees.
    # `env` then holds only the user's env (it goes into the Secret); the image is referenced by digest.
    app: str | None = None  # the project's own name ("acme")
    namespace: str | None = None
    image: str | None = None
    # The project's queue-metrics server's image by digest (a deploy to a target with a registry pushes it); None:
    # the name form, engine/kubernetes/queue_metrics.py's QUEUE_METRICS_IMAGE.
    queue_metrics_image: str | None = None
    # Backing services (type redis | postgres, see spec/backing.py). `kind` is the service's type; `backing`
    # what an engine needs to run one: {"port", "auth", "disk_size"} and, locally, {"address", "data_dir"}.
    kind: str = "worker"
    backing: dict[str, Any] | None = None
    # Local engine: the project's hosts file (engine/names.py), bind-mounted over /etc/hosts in each replica's
    # own mount namespace so that <name>.internal resolves there; None: names unavailable on this machine.
    hosts: str | None = None
    # The project's backing services a worker reaches as <name>.internal (Kubernetes: its pods' hostAliases).
    internal: tuple[str, ...] = ()
    # type: cron (kind "cron"): its schedule; no replica runs, each tick is a run (replicas 0: stopped).
    cron: Cron | None = None
    suspended: bool = False  # `cron suspend`: no tick runs (a cluster's CronJob gets spec.suspend)
    # A worker's or cron service's disk (spec/disks.py): {"name", "mount_path", "size", "path"}; `path` is the
    # directory on this machine (bind-mounted at mount_path in the replica, and STACKBLAZE_DISK_PATH), None on a
    # cluster (a PersistentVolumeClaim there).
    disk: dict[str, Any] | None = None
    # An autoscaled worker's replica numbers (local engine): a scale-down removes its victims, wherever they
    # are, and a scale-up takes the lowest free numbers. None (or not `replicas` of them): 1..replicas.
    indexes: tuple[int, ...] | None = None
    # A worker's `autoscale:` (queues.url expanded). On Kubernetes it becomes a KEDA ScaledObject and the
    # Deployment leaves spec.replicas to it; `autoscale_paused` (a manual `scale` while autoscaled: that count)
    # pauses it there (paused-replicas) until `scale --auto` sets it back to None.
    autoscale: Autoscale | None = None
    autoscale_paused: int | None = None


def replica_numbers(desired: Desired | None) -> tuple[int, ...]:
    """The replica numbers that should run: `indexes` when it holds exactly `replicas` numbers, else 1..N."""
    if desired is None:
        return ()
    if desired.indexes is not None and len(desired.indexes) == desired.replicas:
        return tuple(sorted(desired.indexes))
    return tuple(range(1, desired.replicas + 1))


class RolloutView(Protocol):
    """What the control plane reads of a rollout an engine gave up on (engine/rollouts.py RolloutBase)."""

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


class LogSource(Protocol):
    """Where an engine keeps its replicas' logs (CRI files, see above), and a crashed container's output."""

    def log_dir(self, project: str) -> Path:
        """The directory of the project's `<service>/<replica>.log` files."""
        ...

    async def previous(self, project: str, service: str, replica: int, count: int) -> list[str]:
        """The last `count` lines of the replica's previous run (a crash's tail); [] when there is none."""
        ...


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

    @property
    def logs(self) -> LogSource: ...


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
