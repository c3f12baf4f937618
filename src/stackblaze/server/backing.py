"""A project's backing services (Redis, PostgreSQL) in the control plane: their addresses and passwords,
the release a deploy records for each (no build: the release is the server's configuration), what the
engine runs, the order of a deploy (backing services ready before any worker), names and destroy.

A backing service has its own lifecycle: its release digest is its kind, the server's version, its auth
and its command line, and its env is fixed (not the project's), so a worker deploy or `env set` leaves
the running server alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackblaze.engine.backing import probe, servers
from stackblaze.engine.backing.ports import conflict, listening_on
from stackblaze.engine.names import HostsFile, hosts_path
from stackblaze.engine.protocol import Desired
from stackblaze.errors import ConflictError, StackblazeError, UserError
from stackblaze.server.home import open_gates, unreachable_by
from stackblaze.server.user_env import UserEnv
from stackblaze.server.worker_user import DEFAULT_USER, WorkerUser
from stackblaze.spec.backing import PORTS, internal_host, service_variables
from stackblaze.spec.model import BACKING_TYPES, BackingType
from stackblaze.spec.references import expand
from stackblaze.spec.rollout import DEFAULT_PROGRESS_DEADLINE
from stackblaze.spec.targets import LOCAL, Target, split_key
from stackblaze.state.backing import BackingRow, BackingStore, first_address
from stackblaze.state.store import ReleaseRow, ServiceRow

if TYPE_CHECKING:
    from stackblaze.engine.protocol import RolloutView
    from stackblaze.server.control import Control
    from stackblaze.server.deploying import Deployer
    from stackblaze.spec import Project, Service

log = logging.getLogger("stackblaze.backing")
READY_TIMEOUT = 30.0  # real seconds, not scaled: a server's start does not speed up under a test's time scale
# A server's whole env: nothing of the project's (an `env set` must not restart Redis), nothing of the
# daemon's (a daemon restarted from another shell must not either).
SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"
Progress = Callable[[str], None]


class NotReady(StackblazeError):
    """A backing service did not answer its readiness probe in time: no worker was started against it."""


def is_backing(spec: dict[str, Any]) -> bool:
    return spec.get("type") in BACKING_TYPES


class BackingServices:
    def __init__(self, control: Control) -> None:
        self._control = control
        self.rows = BackingStore(control.store, first=first_address(control.settings.home))

    # -- who, where, names -------------------------------------------------------------------------

    def server_user(self) -> WorkerUser | None:
        """Who the servers run as: a root daemon's worker user, and never root, even where workers may be
        (PostgreSQL refuses to run as root; a database has no business being root). None: the daemon's."""
        workers = self._control.workers
        if not workers.as_root:
            return None
        return workers.resolve(None) or workers.resolve(DEFAULT_USER)

    def data_dir(self, project: str, service: str) -> Path:
        return self._control.settings.disks_dir / project / service

    def address(self, project: str, service: str) -> str | None:
        """Where the service answers, for `ps`: "127.77.0.1:6379" locally, "cache.internal:6379" on a cluster."""
        row = self.rows.row(project, service)
        if row is None:
            return None
        return f"{row.address or internal_host(service)}:{PORTS[row.kind]}"  # type: ignore[index]

    def names_available(self) -> bool:
        return self._control.names.mode is not None  # engine/names.py's NamesMode, probed at daemon start

    def hosts(self, project: str) -> str | None:
        """The project's hosts file for its replicas (local projects, where names work here), made if missing."""
        if split_key(project)[1] != LOCAL or not self.names_available():
            return None
        path = hosts_path(self._control.settings.home, project)
        if not path.exists():
            self.sync_hosts(project)
        return str(path)

    def sync_hosts(self, project: str) -> None:
        if split_key(project)[1] != LOCAL or not self.names_available():
            return
        entries = {internal_host(r.service): r.address for r in self.rows.rows(project) if r.address}
        HostsFile(hosts_path(self._control.settings.home, project)).sync(entries)

    def sync_all_hosts(self) -> None:
        """At daemon start: every local project's file says its services (the host's /etc/hosts may have
        changed meanwhile)."""
        for project in {r.project for r in self.rows.rows()}:
            try:
                self.sync_hosts(project)
            except (OSError, ValueError) as exc:
                log.error("%s: cannot write its hosts file: %s", project, exc)

    # -- references --------------------------------------------------------------------------------

    def variables(self, project: str) -> tuple[dict[str, dict[str, str]], dict[str, tuple[BackingType, bool]]]:
        """What `${{name.VAR}}` expands to in `project` (a store key), and its backing services' kinds. The
        host is `<name>.internal`, except locally where replicas cannot get the names: the address."""
        local = split_key(project)[1] == LOCAL
        by_name = not local or self.names_available()
        variables: dict[str, dict[str, str]] = {}
        kinds: dict[str, tuple[BackingType, bool]] = {}
        for row in self.rows.rows(project):
            kind: BackingType = "redis" if row.kind == "redis" else "postgres"
            host = internal_host(row.service) if by_name or row.address is None else row.address
            variables[row.service] = service_variables(kind, row.service, host=host, password=row.secret)
            kinds[row.service] = (kind, row.secret is not None)
        return variables, kinds

    def expand(self, project: str, user_env: UserEnv, *, strict: bool = True) -> UserEnv:
        """`user_env` with its references expanded; values that now carry a password join its secrets. Not
        `strict` (a replica's start): a reference to nothing (an `env set` value naming a service that
        is gone) is left as written and logged, rather than failing the supervisor."""
        if not any("${{" in value for value in user_env.values.values()):
            return user_env
        variables, kinds = self.variables(project)
        try:
            done = expand(user_env.values, variables, backing=kinds)
        except UserError as exc:
            if strict:
                raise
            log.error("%s: %s (left as written)", project, exc)
            return user_env
        return UserEnv(done.values, user_env.secrets | done.secrets)

    # -- deploy ------------------------------------------------------------------------------------

    def ensure(self, project: Project, target: Target) -> None:
        """Before building: each backing service has its row (address, password), its server's user can
        reach its disk, and its port is free on its address (unless it is the one running there)."""
        local = target.is_local
        backing = [s for s in project.services if s.is_backing]
        for service in backing:
            row = self.rows.ensure(project.name, service.name, kind=service.type, auth=service.auth, local=local,
                                   busy=listening_on)
            if local:
                self._check_reach(service.name, self.data_dir(project.name, service.name))
                self._check_port(project.name, service, row)
        if local and backing:
            self.sync_hosts(project.name)

    def _check_reach(self, service: str, data_dir: Path) -> None:
        user = self.server_user()
        if user is None:
            return
        home = self._control.settings.home
        gid = self._control.workers.worker_gid()
        if gid is not None:
            data_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            open_gates(data_dir, top=home, gid=gid)
        blocked = unreachable_by(data_dir.parent, uid=user.uid, groups={user.gid, *user.groups})
        if blocked is not None:
            raise UserError(f"service {service}: its server runs as {user.name!r}, who cannot reach {home} "
                            f"({blocked} is {blocked.stat().st_mode & 0o777:04o}): use a home they can reach "
                            "(e.g. STACKBLAZE_HOME=/var/lib/stackblaze)")

    def _check_port(self, project: str, service: Service, row: BackingRow) -> None:
        assert row.address is not None
        running = [r for r in self._control.engine.status(project, service.name)
                   if r.get("pid") and r["state"] in ("running", "stopping")]
        if running:  # its own server holds the port
            return
        port = PORTS[service.type]  # type: ignore[index]
        held = conflict(row.address, port)
        if held is not None:
            raise ConflictError(
                f"service {service.name}: port {port} is already held on {held.address} by {held.holder()}, so "
                f"{service.type} cannot listen on {row.address}:{port}: stop that server (or bind it to "
                "127.0.0.1 only) and deploy again")

    def record(self, deployer: Deployer, project: Project, service: Service, target: Target) -> dict[str, Any]:
        """Prepare the disk (locally) and record the service and its release; the same configuration is the
        same release, so an unchanged service is left running."""
        from stackblaze.server.deploying import service_spec

        row = self.rows.row(project.name, service.name)
        assert row is not None, "ensure() first"
        details: dict[str, Any] = {"kind": service.type, "auth": service.auth, "disk_size": service.disk_size,
                                   "runtime": service.type}
        path = ""
        if target.is_local:
            assert row.address is not None
            data_dir = self.data_dir(project.name, service.name)
            user = self.server_user()
            prepared = servers.prepare(service.type, data_dir=data_dir, address=row.address, password=row.password,
                                       auth=service.auth, user=user.spawn_fields() if user else None)
            path = str(data_dir)
            details.update({"start": prepared.start, "version": prepared.version, "shown": prepared.shown,
                            "address": row.address, "data_dir": path})
        else:
            details.update({"start": service.type, "shown": f"{service.type} ({service.disk_size} volume)"})
        digest = "backing:" + hashlib.sha256(json.dumps(
            [details["kind"], details.get("version"), details["auth"], details["start"], service.disk_size],
            sort_keys=True).encode()).hexdigest()[:16]
        number, new = deployer.release_number(project.name, service.name, digest)
        store = self._control.store
        if new:
            store.add_release(ReleaseRow(project.name, service.name, number, path, digest, time.time(), details))
        spec = {**service_spec(project, service), "auth": service.auth, "disk_size": service.disk_size}
        if not target.is_local:
            spec["target"] = target.to_dict()
        old = store.service(project.name, service.name)
        store.save_service(ServiceRow(project.name, service.name, spec, 1, number, old.running if old else True,
                                      old.generation if old else 0))
        return {"service": service.name, "release": number, "new_release": new, "replicas": 1,
                "spec_replicas": 1, "scale_note": None, "installed": False, "built": False,
                "runtime": service.type, "resolved_version": details.get("version"), "warnings": [],
                "kind": service.type}

    async def roll(self, project: str, results: list[dict[str, Any]], progress: Progress
                   ) -> dict[str, RolloutView | None]:
        """Reconcile each backing service of a deploy and, locally, wait until it answers (READY_TIMEOUT
        each); raises NotReady with its last log lines said to `progress` when one does not."""
        engine = self._control.engine_for(project)
        rollouts: dict[str, RolloutView | None] = {}
        for item in results:
            name = item["service"]
            before = engine.rollout(project, name)
            await engine.reconcile(project, name, fresh=True)
            after = engine.rollout(project, name)
            rollouts[name] = after if after is not before else None
        if split_key(project)[1] == LOCAL:
            for item in results:
                await self._wait_ready(project, item["service"], progress)
        return rollouts

    async def _wait_ready(self, project: str, service: str, progress: Progress) -> None:
        row = self.rows.row(project, service)
        record = self._control.store.service(project, service)
        if row is None or row.address is None or record is None or not record.running:
            return
        started = time.monotonic()
        deadline = started + READY_TIMEOUT
        while True:
            if await asyncio.to_thread(probe.ready, row.kind, row.address, row.secret):
                progress(f"{service} | ready on {row.address}:{PORTS[row.kind]}"  # type: ignore[index]
                         f" ({time.monotonic() - started:.1f}s)")
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        since = time.time() - READY_TIMEOUT - 5
        for line in await asyncio.to_thread(self._control.last_lines, project, service, 1, since):
            progress(f"{service} | {line}")
        raise NotReady(f"{service}: {row.kind} did not answer on {row.address}:{PORTS[row.kind]}"  # type: ignore[index]
                       f" within {READY_TIMEOUT:g}s (its last lines are above; see: stackblaze logs {service})")

    def forget(self, project: str, services: Iterable[str]) -> None:
        """Services that left the spec (already stopped): their addresses are free again; their data stays."""
        for name in services:
            self.rows.forget(project, name)
        self.sync_hosts(project)

    def destroy(self, project: str, *, disks: bool) -> None:
        """A destroyed project's rows, hosts file and (with `disks`) its services' data."""
        self.rows.forget(project)
        if split_key(project)[1] == LOCAL:
            hosts_path(self._control.settings.home, project).unlink(missing_ok=True)
        if disks:
            shutil.rmtree(self._control.settings.disks_dir / project, ignore_errors=True)

    # -- what the engine runs ----------------------------------------------------------------------

    def desired(self, row: ServiceRow, release: ReleaseRow) -> Desired | None:
        """A backing service's Desired: its server (locally) or what a cluster needs to run one."""
        project, service, spec = row.project, row.name, row.spec
        found = self.rows.row(project, service)
        if found is None:
            return None
        app, target_name = split_key(project)
        remote = target_name != LOCAL
        details = release.details
        backing: dict[str, Any] = {"port": PORTS[found.kind],  # type: ignore[index]
                                   "auth": details.get("auth", "none"), "disk_size": details.get("disk_size", "1Gi")}
        user = None if remote else self.server_user()
        if remote:
            env = {"PASSWORD": found.password} if found.secret is not None else {}
            digested = {k: self._control.store.secrets.keyed_digest(v) for k, v in env.items()}
        else:
            backing.update({"address": found.address, "data_dir": release.path})
            env = digested = {"PATH": SERVER_PATH, "HOME": release.path, "LANG": "C.UTF-8"}
        config = hashlib.sha256(json.dumps(
            [row.release, details["start"], digested, spec["stop_signal_number"], spec["shutdown_grace"],
             row.generation, *([user.spawn_fields()] if user else [])], sort_keys=True).encode()).hexdigest()[:16]
        target = Target.from_dict(spec["target"]) if remote else None
        return Desired(
            project=project, service=service, replicas=1 if row.running else 0, release=row.release,
            cwd=release.path, start=details["start"], env=env, stop_signal=spec["stop_signal_number"],
            shutdown_grace=spec["shutdown_grace"], strategy="recreate", config=config,
            log_max_bytes=spec.get("log_max_bytes", 10 << 20), log_max_files=spec.get("log_max_files", 5),
            min_ready=0.0, progress_deadline=spec.get("progress_deadline", DEFAULT_PROGRESS_DEADLINE),
            user=user.spawn_fields() if user else None, app=app if remote else None,
            namespace=(target.namespace or app) if target else None, kind=found.kind, backing=backing,
            hosts=None if remote else self.hosts(project),
        )

    def worker_fields(self, project: str) -> dict[str, Any]:
        """What a worker's Desired carries of the project's backing services: their names (a cluster's
        hostAliases) and, locally, the hosts file its replicas see as /etc/hosts."""
        return {"internal": tuple(r.service for r in self.rows.rows(project)), "hosts": self.hosts(project)}
