"""The parsed project: small frozen dataclasses that every later stage reads."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stackblaze.spec.autoscale import Autoscale
from stackblaze.spec.cron import Cron
from stackblaze.spec.disks import Disk
from stackblaze.spec.rollout import DEFAULT_MIN_READY, DEFAULT_PROGRESS_DEADLINE, Rolling
from stackblaze.spec.targets import Target

ServiceType = Literal["worker", "cron", "redis", "postgres"]
BackingType = Literal["redis", "postgres"]
BACKING_TYPES: tuple[BackingType, ...] = ("redis", "postgres")
Auth = Literal["none", "password"]
Strategy = Literal["rolling", "recreate"]
Runtime = Literal["python", "node", "go", "ruby"]


# env is a plain dict typed as Mapping: a MappingProxyType would be truly read-only, but it breaks
# copy.deepcopy and dataclasses.asdict, which the CLI and the state store want to use.
@dataclass(frozen=True, kw_only=True)
class Service:
    """One service of a project, with every default filled in."""

    name: str
    start: str
    type: ServiceType = "worker"
    root: str = "."
    replicas: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = "SIGTERM"
    shutdown_grace: float = 30.0
    strategy: Strategy = "rolling"
    rolling: Rolling = field(default_factory=Rolling)  # max_surge / max_unavailable of a rolling rollout
    min_ready: float = DEFAULT_MIN_READY  # seconds a new replica runs without exiting to count as available
    progress_deadline: float = DEFAULT_PROGRESS_DEADLINE  # a rollout not done by then has failed
    build: str | None = None
    # Runs once per new release, after its build and before any of its replicas start (Heroku's release
    # phase); a failure fails the deploy and leaves the running release alone.
    release: str | None = None
    runtime: Runtime | None = None  # None: detected from the files at root
    # Where start came from when stackblaze.yaml did not give it: "Procfile", "package.json scripts.start",
    # "go build"; None when the spec says it.
    start_source: str | None = None
    log_max_bytes: int = 10 << 20  # per replica file, rotated by rename
    log_max_files: int = 5  # files kept per replica, the live one included
    user: str | None = None  # who the replicas run as when the daemon is root (None: the worker user)
    # Backing services (type redis | postgres): a server of the machine (locally) or a StatefulSet (Kubernetes)
    # that the project's workers reach as <name>.internal. `auth: password` generates a password (a secret).
    auth: Auth = "none"
    disk_size: str = "1Gi"  # the volume claim's request on Kubernetes; reported, not enforced, locally
    cron: Cron | None = None  # type: cron: its schedule; its runs are one-off processes, not replicas
    disk: Disk | None = None  # a worker's or cron service's own storage, mounted at disk.mount_path
    autoscale: Autoscale | None = None  # a worker whose replica count follows its queues' work

    @property
    def is_backing(self) -> bool:
        """A project's Redis or PostgreSQL, as opposed to a worker built from the source."""
        return self.type in BACKING_TYPES

    @property
    def stop_signal_number(self) -> int:
        """The number of stop_signal on this platform (e.g. 15 for SIGTERM)."""
        return int(signal.Signals[self.stop_signal])


@dataclass(frozen=True, kw_only=True)
class Project:
    """A project read from stackblaze.yaml or a Procfile."""

    name: str
    services: tuple[Service, ...]
    source: Path
    env: Mapping[str, str] = field(default_factory=dict)
    spec_file: Path | None = None
    notes: tuple[str, ...] = ()
    targets: Mapping[str, Target] = field(default_factory=dict)  # `targets:` besides the local default
