"""The control plane's operations: deploy, scale, start/stop, env, destroy — state first, then reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackblaze.engine.factory import open_target
from stackblaze.engine.names import NamesMode
from stackblaze.engine.protocol import DEFAULT_ENV, Desired, Engine, EngineHooks, RolloutView, RunningEngine
from stackblaze.errors import ConflictError, DiskFullError, NotFoundError, StackblazeError, UserError
from stackblaze.logs.reader import find_logs, tail_records
from stackblaze.logs.record import format_time
from stackblaze.server.autoscaling import Autoscaler
from stackblaze.server.backing import BackingServices, is_backing
from stackblaze.server.cron_desired import cron_fields, is_cron
from stackblaze.server.disks import DiskUsage, desired_disk
from stackblaze.server.home import keep_reserve, release_reserve, share_tree, unreachable_by
from stackblaze.server.user_env import UserEnv, merge_user_env
from stackblaze.server.worker_user import WorkerUser, WorkerUsers
from stackblaze.settings import Settings
from stackblaze.spec.fields import check_name
from stackblaze.spec.rollout import DEFAULT_MIN_READY, DEFAULT_PROGRESS_DEADLINE, Rolling
from stackblaze.spec.targets import LOCAL, Target, TargetRequest, split_key
from stackblaze.state.secrets import MASK
from stackblaze.state.sqlite import no_space
from stackblaze.state.store import ReleaseRow, ServiceRow, Store

if TYPE_CHECKING:
    from stackblaze.build.toolchains import SystemToolchains
    from stackblaze.spec import Project

log = logging.getLogger("stackblaze.control")
# What a worker sees besides its project's env: enough to find its tools, nothing of the daemon's secrets.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE",
                 "REQUESTS_CA_BUNDLE", "PIP_CERT", "NODE_EXTRA_CA_CERTS")
TOOLCHAIN_TTL = 300.0
TOOLCHAIN_PATHS = 8  # how many PATH values' probes are kept (one per deploying shell, in practice)


class Control:
    def __init__(self, *, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.supervisor: Engine | None = None  # set once the runner is connected
        # How replicas get <name>.internal here (engine/names.py): the daemon probes once at start; until then,
        # and where nothing works, mode None and references use IP URLs.
        self.names = NamesMode(None, "not checked yet (the daemon probes at start)")
        self._new_event = asyncio.Event()
        self.events_lost: dict[str, int] = {}  # per project, while the disk is full
        self.workers = WorkerUsers()
        self._shared: set[str] = set()  # trees shared with the worker group by this daemon
        self._destroying: set[str] = set()  # projects whose replicas must stop, whatever their rows say
        # PATH -> (when probed, the probe, its fingerprint then); least recently used first
        self._toolchains: dict[str, tuple[float, SystemToolchains, tuple[object, ...]]] = {}
        self._targets: dict[str, tuple[Target, RunningEngine]] = {}  # by target name: kubernetes and fake ones
        self.backing = BackingServices(self)  # the projects' Redis and PostgreSQL (server/backing.py)
        self.disk_usage = DiskUsage(settings)  # workers' disks, measured for ps (server/disks.py)
        self.autoscaler = Autoscaler(self)  # autoscaled workers' loops (server/autoscaling.py)

    def toolchains(self, path: str | None = None) -> SystemToolchains:
        """This machine's interpreters and tools as found on `path` (the deploying CLI's PATH; the daemon's
        when None). Probing takes a second or two, so a redeploy reuses the probe for that PATH while its
        fingerprint holds (nothing installed into or removed from a directory it searches, no command
        resolving elsewhere), for at most TOOLCHAIN_TTL seconds: a tool that was missing is looked up
        again by the next deploy once it is installed."""
        from stackblaze.build.toolchains import SystemToolchains

        key = os.environ.get("PATH", os.defpath) if path is None else path
        now = time.monotonic()
        cached = self._toolchains.pop(key, None)
        if cached is None or now - cached[0] > TOOLCHAIN_TTL or cached[1].fingerprint() != cached[2]:
            probe = SystemToolchains(path=key)
            cached = (now, probe, probe.fingerprint())  # taken before probing: a later change is seen
        self._toolchains[key] = cached
        while len(self._toolchains) > TOOLCHAIN_PATHS:
            del self._toolchains[next(iter(self._toolchains))]
        return cached[1]

    @property
    def engine(self) -> Engine:
        """The local engine (the default target)."""
        assert self.supervisor is not None
        return self.supervisor

    def engine_for(self, project: str) -> Engine:
        """The engine of a stored project key: the local one, or the target's after `project@target`."""
        target = split_key(project)[1]
        if target == LOCAL:
            return self.engine
        running = self._targets.get(target)
        if running is None:
            raise ConflictError(f"target {target!r} is not connected to this daemon "
                                f"(deploy to it again: stackblaze deploy --target {target})")
        return running[1].engine

    def log_dir(self, project: str) -> Path:
        """Where a project's replica logs are: its engine's LogSource says (a disconnected target's are where
        they were written, under the home's logs)."""
        if self.supervisor is None:  # the local engine is starting (and asks for an exit's last lines)
            return self.settings.logs_dir / project
        try:
            return self.engine_for(project).logs.log_dir(project)
        except ConflictError:
            return self.settings.logs_dir / project

    def hooks(self, target: str) -> EngineHooks:
        """What the engine of `target` asks of the control plane: it sees only its own target's services."""
        def services() -> list[tuple[str, str]]:
            return [(project, service) for project, service in self.services() if split_key(project)[1] == target]
        return EngineHooks(desired=self.desired, services=services, record_event=self.event,
                           last_lines=self.read_last_lines, rollout_failed=self.rollout_failed)

    async def connect(self, target: Target) -> Engine:
        """The engine of a kubernetes or fake target, opened on first use (or again when its settings
        changed: another context, namespace or registry)."""
        current = self._targets.get(target.name)
        if current is not None and current[0] == target:
            return current[1].engine
        if current is not None:
            await current[1].close()
        running = await open_target(self.settings, target, hooks=self.hooks(target.name))
        self._targets[target.name] = (target, running)
        return running.engine

    async def connect_stored(self) -> None:
        """At start: every target a stored service runs on (a failure is logged; that target's commands
        say it is not connected, the others work)."""
        found: dict[str, Target] = {}
        for row in self.store.services():
            if split_key(row.project)[1] != LOCAL and row.spec.get("target"):
                target = Target.from_dict(row.spec["target"])
                found[target.name] = target
        for target in found.values():
            try:
                await self.connect(target)
            except StackblazeError as exc:
                log.error("target %s: %s", target.name, exc)

    async def close_targets(self) -> None:
        for _, running in self._targets.values():
            await running.close()
        self._targets.clear()

    # -- what the supervisor asks ------------------------------------------------------------------

    def services(self) -> list[tuple[str, str]]:
        return [(row.project, row.name) for row in self.store.services()]

    def desired(self, project: str, service: str) -> Desired | None:
        row = self.store.service(project, service) if project not in self._destroying else None
        if row is None:
            return None
        release = self.store.release(project, service, row.release)
        if release is None:
            return None
        if is_backing(row.spec):
            return self.backing.desired(row, release)
        spec = row.spec
        app, target_name = split_key(project)
        remote = target_name != LOCAL
        user = None if remote else self.workers.resolve(spec.get("user"))
        if user is not None:
            self._share_release(release)
        env, user_env = self.replica_env(project, service, spec, release.details.get("runtime_env") or {}, user,
                                         remote=remote)
        start = release.details["start"]
        disk = desired_disk(self.settings, project, spec, user=user, gid=None if remote else self.workers.worker_gid(),
                            remote=remote)
        # The digest is stored (replica status): secrets enter it keyed, so it confirms no guessed value.
        digested = {k: self.store.secrets.keyed_digest(v) if v in user_env.secrets else v for k, v in env.items()}
        config = hashlib.sha256(json.dumps(
            [row.release, start, digested, spec["stop_signal_number"], spec["shutdown_grace"],
             row.generation, *([user.spawn_fields()] if user else []),
             *([release.details.get("image")] if remote else []), *([disk] if disk else [])],
            sort_keys=True).encode()).hexdigest()[:16]
        target = Target.from_dict(spec["target"]) if remote else None
        return Desired(
            project=project, service=service, replicas=row.replicas if row.running else 0,
            release=row.release, cwd=release.path, start=start, env=env,
            stop_signal=spec["stop_signal_number"], shutdown_grace=spec["shutdown_grace"],
            strategy=spec["strategy"], config=config, log_max_bytes=spec.get("log_max_bytes", 10 << 20),
            log_max_files=spec.get("log_max_files", 5), min_ready=spec.get("min_ready", DEFAULT_MIN_READY),
            progress_deadline=spec.get("progress_deadline", DEFAULT_PROGRESS_DEADLINE),
            rolling=Rolling(**spec.get("rolling", {})), user=user.spawn_fields() if user else None,
            app=app if remote else None, namespace=(target.namespace or app) if target else None,
            image=release.details.get("image") if remote else None, **self.backing.worker_fields(project),
            queue_metrics_image=spec.get("queue_metrics_image") if remote else None,
            **cron_fields(self.store, project, service, spec), disk=disk, indexes=self.autoscaler.indexes(row),
        )

    def replica_env(self, project: str, service: str, spec: Mapping[str, Any], runtime_env: Mapping[str, str],
                    user: WorkerUser | None, *, remote: bool = False) -> tuple[dict[str, str], UserEnv]:
        """What a replica's process sees but its STACKBLAZE_* names (its release command sees it too), and
        the user env within it (its secrets: never printed)."""
        # A cluster's pods see only the user's env (in their Secret) and the image's; the local replicas also
        # the daemon's PATH, HOME and the release's runtime env.
        env = {} if remote else {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        if user is not None:  # the daemon is root: workers are not, and not at home in root's HOME
            env.update({"HOME": user.home, "USER": user.name, "LOGNAME": user.name})
        if not remote:  # on a cluster the Deployment's own env carries it: the Secret is the user's env only
            env.update(DEFAULT_ENV)
        runtime = {} if remote else dict(runtime_env)
        if "PATH" in runtime:  # e.g. the venv's bin first: "$DEPS/venv/bin:$PATH", $DEPS already resolved
            runtime["PATH"] = runtime["PATH"].replace("$PATH", env.get("PATH", os.defpath))
        env.update(runtime)
        user_env = merge_user_env(project_env=spec["project_env"], service_env=spec["env"],
                                  stored=self.store.env(project), service=service)
        user_env = self.backing.expand(project, user_env, strict=False)  # ${{cache.REDIS_URL}}
        env.update(user_env.values)
        return env, user_env

    def check_workers(self, project: Project) -> list[str]:
        """At deploy, before anything is built: each service's `user:` exists, and whoever its workers run
        as can reach the home's releases. Returns notes (a `user:` a non-root daemon ignores)."""
        notes = []
        for service in project.services:
            note = self.workers.check(service.user, where=f"service {service.name}: user")
            if note:
                notes.append(note)
            user = self.workers.resolve(service.user)
            if user is None:
                continue
            blocked = unreachable_by(self.settings.home, uid=user.uid, groups={user.gid, *user.groups})
            if blocked is not None:
                raise UserError(
                    f"service {service.name}: its workers run as {user.name!r}, who cannot reach "
                    f"{self.settings.home} ({blocked} is {blocked.stat().st_mode & 0o777:04o}): use a home they "
                    f"can reach (e.g. STACKBLAZE_HOME=/var/lib/stackblaze) or STACKBLAZE_WORKER_USER=root")
        return notes

    def share_release(self, release: ReleaseRow) -> None:
        """See _share_release: for a release not recorded yet (its release command runs first)."""
        self._share_release(release)

    def _share_release(self, release: ReleaseRow) -> None:
        """A release's build tree and dependency layer, readable by the worker group (once per daemon: a
        tree never changes once built)."""
        gid = self.workers.worker_gid()
        build_id = release.details.get("build_id")
        tree = (self.settings.releases_dir / release.project / "builds" / build_id) if build_id else Path(release.path)
        deps = release.details.get("deps_dir")
        for path in (tree, *([Path(deps)] if deps else [])):
            if gid is not None and str(path) not in self._shared and share_tree(path, top=self.settings.home, gid=gid):
                self._shared.add(str(path))

    def rollout_failed(self, rollout: RolloutView) -> None:
        """The engine gave up on a rollout: the release is marked, and where the engine kept (or restored)
        the old release the service is recorded as running it again, so ps, a restart and the next daemon
        all agree on what runs. Called by the engine: a full disk is logged, never raised into it."""
        try:
            self.store.update_release(rollout.project, rollout.service, rollout.release,
                                      {"rollout": "failed", "rollout_error": rollout.reason})
            row = self.store.service(rollout.project, rollout.service)
            if (row is not None and rollout.restored and rollout.from_release is not None
                    and row.release == rollout.release != rollout.from_release):
                self.store.save_service(ServiceRow(row.project, row.name, row.spec, row.replicas,
                                                   rollout.from_release, row.running, row.generation))
        except DiskFullError as exc:
            log.warning("%s: the failed rollout of %s/%s release %d is not recorded", exc, rollout.project,
                        rollout.service, rollout.release)

    async def wait_rollouts(self, project: str, started: dict[str, RolloutView | None],
                            progress: Callable[[str], None]) -> list[dict[str, Any]]:
        """Wait for the rollouts that `started` names (None: the service had nothing to roll out) and
        return how each ended, saying each change of its counts on the way."""
        outcomes = []
        for service, rollout in started.items():
            def say(record: dict[str, Any], service: str = service) -> None:
                if record["state"] == "progressing":
                    old = f", {record['old_running']} old still running" if record["old_running"] else ""
                    progress(f"{service}: {record['new_available']}/{record['replicas']} new replicas available{old}")

            if rollout is None:
                outcomes.append({"service": service, "state": "unchanged"})
            else:
                outcomes.append(await self.engine_for(project).wait_rollout(rollout, on_change=say))
        return outcomes

    def start_command(self, row: ServiceRow) -> str:
        release = self.store.release(row.project, row.name, row.release)
        # A backing service's command line is long and its own: ps shows what runs where instead.
        return str(release.details.get("shown") or release.details["start"]) if release is not None else "-"

    async def read_last_lines(self, project: str, service: str, replica: int, since: float) -> list[str]:
        """last_lines, read in a worker thread: the supervisor's loop never waits on a file."""
        return await asyncio.to_thread(self.last_lines, project, service, replica, since)

    def last_lines(self, project: str, service: str, replica: int, since: float, count: int = 20) -> list[str]:
        """The replica's last log lines written since `since` (its start): what an exit event carries."""
        logs = find_logs(self.log_dir(project), service, replica)
        since_text = format_time(since)
        return [r.line for r in tail_records(logs, count) if r.at >= since_text]

    def event(self, **fields: Any) -> None:
        """Record an event. Never raises for a full disk: what the supervisor reports while it handles an
        exit must not stop it; lost events are logged, counted, and reported once the disk has room."""
        try:
            self.store.add_event(**fields)
        except DiskFullError as exc:
            project = str(fields.get("project"))
            self.events_lost[project] = self.events_lost.get(project, 0) + 1
            if sum(self.events_lost.values()) == 1:
                log.warning("%s: events are not recorded until there is room (counted)", exc)
            return
        if self.events_lost:
            with contextlib.suppress(DiskFullError):  # room for one event is not room for all: next time
                self._report_lost_events()
        # Wake every follower waiting on the old flag; later waiters get a fresh one.
        self._new_event.set()
        self._new_event = asyncio.Event()

    def _report_lost_events(self) -> None:
        for project, count in list(self.events_lost.items()):
            if project in self.store.project_names():
                self.store.add_event(project=project, kind="events-lost",
                                     message=f"{count} events were not recorded: the disk was full",
                                     details={"count": count})
            del self.events_lost[project]
        log.warning("the disk has room again: events are recorded again")

    async def next_event(self) -> None:
        await self._new_event.wait()

    # -- projects ----------------------------------------------------------------------------------

    def resolve(self, project: str | None, *, deployed: bool = True) -> str:
        """The project a request is about: the one it names (the CLI sends --project, STACKBLAZE_PROJECT or
        its directory's project), else the only deployed one. `deployed=False` (env writes and reads) also
        accepts a project not deployed yet: env is kept by name, so it can be set before the first deploy."""
        names = self.store.project_names()
        if project is not None and project.startswith("@"):  # `--target prod` outside a project: the one there
            names = [name for name in names if name.endswith(project)]
            if len(names) == 1:
                return names[0]
            if not names:
                raise NotFoundError(f"nothing is deployed to target {project[1:]!r} (deploy: stackblaze deploy "
                                    f"--target {project[1:]})")
            raise UserError(f"several projects are deployed to target {project[1:]!r} "
                            f"({', '.join(split_key(n)[0] for n in names)}): pass --project NAME")
        if project is not None:
            if project not in names:
                if not deployed:  # env set before the first deploy (on a target too: `acme@prod`)
                    name, at, target = project.partition("@")
                    return check_name(name, where="--project", key="project") + at + target
                raise NotFoundError(f"project {project!r} is not deployed (deployed: {', '.join(names) or 'none'}; "
                                    "deploy it: cd into it and run stackblaze deploy)")
            return project
        remote = [name for name in names if split_key(name)[1] != LOCAL]
        names = [name for name in names if name not in remote]  # no --target: the local ones
        if not names and remote:
            raise ConflictError(f"nothing is deployed locally (on targets: {', '.join(remote)}; pass --target "
                                f"{split_key(remote[0])[1]})")
        if not names:
            raise ConflictError("nothing is deployed yet (run: stackblaze deploy PATH)")
        if len(names) > 1:
            raise UserError(f"several projects are deployed ({', '.join(names)}): pass --project NAME, or run the "
                            "command in the project's directory")
        return names[0]

    def row(self, project: str, service: str) -> ServiceRow:
        row = self.store.service(project, service)
        if row is None:
            known = ", ".join(r.name for r in self.store.services(project)) or "none"
            raise NotFoundError(f"service {service!r} not found in project {project!r} (services: {known})")
        return row

    async def deploy(self, path: str, progress: Callable[[str], None], *, path_env: str | None = None,
                     detach: bool = False, target: TargetRequest | None = None) -> dict[str, Any]:
        """`path_env`: the deploying CLI's PATH, where tools are looked up and build steps find them."""
        from stackblaze.server.deploying import Deployer

        try:
            return await Deployer(self).deploy(path, progress, path_env=path_env, detach=detach, target=target)
        except OSError as exc:  # a build writing into a full STACKBLAZE_HOME (copytree's error has no errno)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) or no_space(self.settings.home):
                raise DiskFullError.at(exc.filename or self.settings.home) from None
            raise
        finally:
            self.autoscaler.sync()  # a loop for each autoscaled worker the deploy added, none for one it removed

    def releases(self, project: str, service: str) -> list[ReleaseRow]:
        """Kept releases and failed build attempts; a service whose first build failed has only those."""
        found = self.store.releases(project, service)
        if not found:
            self.row(project, service)
        return found

    async def rollback(self, project: str, service: str, number: int | None) -> dict[str, Any]:
        """Switch to a kept release without rebuilding (default: the one before the running one)."""
        row = self.row(project, service)
        kept = [r.number for r in self.store.releases(project, service) if r.built]
        if number is None:
            older = [n for n in kept if n < row.release]
            if not older:
                raise ConflictError(f"{service}: no release before {row.release} to roll back to "
                                    f"(kept: {', '.join(map(str, kept))})")
            number = older[-1]
        if number not in kept:
            raise NotFoundError(f"{service}: release {number} is not kept (kept: {', '.join(map(str, kept))})")
        self.store.save_service(ServiceRow(row.project, row.name, row.spec, row.replicas, number, row.running,
                                           row.generation))
        self.event(project=project, service=service, kind="rollback",
                   message=f"{service}: release {row.release} -> {number} (no rebuild)",
                   details={"from": row.release, "to": number})
        await self.engine_for(project).reconcile(project, service, fresh=True)
        return {"service": service, "from": row.release, "release": number}

    def build_log(self, project: str, service: str, number: int | None) -> tuple[int | None, str]:
        """The log of a release's build, or of the latest build attempt (failed ones included)."""
        if not self.store.releases(project, service):
            self.row(project, service)
        folder = self.settings.releases_dir / project / service
        path = folder / (f"{number}.build.log" if number is not None else "build.log")
        if not path.exists():
            raise NotFoundError(f"{service}: no build log{f' for release {number}' if number else ''} yet")
        return number, path.read_text(errors="replace")

    async def scale(self, project: str, service: str, replicas: int) -> dict[str, Any]:
        if not 0 <= replicas <= 1000:
            raise UserError(f"--replicas: {replicas} is out of range (use 0 to 1000)")
        row = self.row(project, service)
        if is_cron(row.spec):
            raise UserError(f"scale {service}: a cron service has no replicas, each tick runs once (pause it: "
                            f"stackblaze cron suspend {service}; run it now: stackblaze cron run {service})")
        if row.spec.get("disk") and replicas > 1:
            raise UserError(f"--replicas: {replicas}: {service} has a disk ({row.spec['disk']['name']} at "
                            f"{row.spec['disk']['mount_path']}) that one replica at a time may write, so it runs at "
                            f"most 1 (as on Render and Railway; share data through a database or a queue instead)")
        if is_backing(row.spec) and replicas != 1:
            raise UserError(f"--replicas: {service} is a {row.spec['type']} service: it runs exactly one server "
                            f"(stop it instead: stackblaze stop {service})")
        paused = await self.autoscaler.manual_scale(row, replicas)  # an autoscaled worker: its loop pauses
        self.store.save_service(ServiceRow(row.project, row.name, row.spec, replicas, row.release,
                                           row.running, row.generation))
        self.event(project=project, service=service, kind="scale",
                   message=f"{service} scaled {row.replicas} -> {replicas}" + (f"; {paused}" if paused else ""),
                   details={"from": row.replicas, "to": replicas, "autoscale_paused": paused is not None})
        await self.engine_for(project).reconcile(project, service)
        return {"service": service, "from": row.replicas, "replicas": replicas, "note": paused}

    async def set_running(self, project: str, service: str, running: bool) -> dict[str, Any]:
        row = self.row(project, service)
        self.store.save_service(ServiceRow(row.project, row.name, row.spec, row.replicas, row.release,
                                           running, row.generation))
        verb = "start" if running else "stop"
        self.event(project=project, service=service, kind=verb, message=f"{service}: {verb} requested")
        await self.engine_for(project).reconcile(project, service, fresh=running)
        self.autoscaler.sync()
        if not running:
            await self.engine_for(project).wait_stopped(project, service)
        return {"service": service, "running": running}

    def record_stop_all(self) -> None:
        """`daemon stop --all` stops every worker: each running service is recorded as stopped, so the next
        daemon does not start what the user just stopped (`stackblaze start` starts them again)."""
        for row in self.store.services():
            if row.running:
                try:
                    self.store.save_service(ServiceRow(row.project, row.name, row.spec, row.replicas,
                                                       row.release, False, row.generation))
                except DiskFullError as exc:  # stopping never waits for room; the next daemon restarts these
                    log.warning("%s: %s/%s not recorded as stopped", exc, row.project, row.name)
                    continue
                self.event(project=row.project, service=row.name, kind="stop",
                           message=f"{row.name}: stopped by `daemon stop --all` (start it again: stackblaze start)")

    async def restart(self, project: str, service: str) -> dict[str, Any]:
        row = self.row(project, service)
        self.store.save_service(ServiceRow(row.project, row.name, row.spec, row.replicas, row.release,
                                           True, row.generation + 1))
        self.event(project=project, service=service, kind="restart",
                   message=f"{service}: restart requested ({row.spec['strategy']})")
        await self.engine_for(project).reconcile(project, service, fresh=True)
        return {"service": service, "strategy": row.spec["strategy"]}

    async def destroy(self, project: str, *, disks: bool = False) -> dict[str, Any]:
        """Stop everything, then delete the project's state, events, releases and logs. Works on a full
        disk: the replicas are stopped before anything is written (the project wants none from here on),
        and when the deletes find no room for their few journal pages, the project's logs and releases
        are emptied first. What stays is one `destroy` event without details, so that a follower of the
        project's events hears of it (and a later deploy of the same name shows when it happened). Backing
        services' data stays on its disk unless `disks`; their addresses are freed either way."""
        rows = self.store.services(project)
        self._destroying.add(project)
        try:
            for row in rows:
                await self.engine_for(project).reconcile(project, row.name)
            await self.engine_for(project).wait_stopped(project)
            self.engine_for(project).forget(project)
            try:
                self.store.delete_project(project)
            except DiskFullError:
                await asyncio.to_thread(self._free_space, project)
                self.store.delete_project(project)
            self.backing.destroy(project, disks=disks)
        finally:
            self._destroying.discard(project)
            self.autoscaler.sync()
        await asyncio.to_thread(keep_reserve, self.settings)  # held again when the freed space allows
        self.events_lost.pop(project, None)
        self.event(project=project, kind="destroy", message=f"project {project} destroyed")
        for folder in (self.settings.releases_dir / project, self.settings.logs_dir / project):
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return {"project": project, "services": [r.name for r in rows]}

    def _free_space(self, project: str) -> None:
        """Room for destroy's deletes: the daemon's reserve, the project's log files emptied (the runner may
        still hold them open, so unlinking alone would free nothing) and its releases removed."""
        log.warning("disk full while destroying %s: emptying its logs and releases first", project)
        release_reserve(self.settings)
        for path in sorted((self.settings.logs_dir / project).rglob("*")):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    os.truncate(path, 0)
        shutil.rmtree(self.settings.releases_dir / project, ignore_errors=True)

    # -- env ---------------------------------------------------------------------------------------

    def env_list(self, project: str) -> list[dict[str, Any]]:
        return [
            {"key": v.key, "value": MASK if v.secret else v.value, "secret": v.secret,
             "service": v.service or None}
            for v in self.store.env(project)
        ]

    async def env_change(
        self, project: str, *, service: str | None, set_values: dict[str, str], unset: list[str],
        secret: bool,
    ) -> dict[str, Any]:
        deployed = project in self.store.project_names()
        if service is not None and deployed:  # before the first deploy, the spec's services are not known yet
            self.row(project, service)
        scope = service or ""
        missing = [key for key in unset if not self.store.unset_env(project, scope, key)]
        for key, value in set_values.items():
            self.store.set_env(project, scope, key, value, secret=secret)
        if missing:
            raise NotFoundError(f"env: {', '.join(missing)} not set (see: stackblaze env list)")
        described = [f"{k} (secret)" if secret else k for k in set_values] + [f"-{k}" for k in unset]
        # A backing service's env is its own (server/backing.py): an env change never restarts it.
        targets = [service] if service else [r.name for r in self.store.services(project) if not is_backing(r.spec)]
        self.event(project=project, service=service, kind="env",
                   message=f"env changed: {', '.join(described)}; restarting {', '.join(targets) or 'nothing'}",
                   details={"set": list(set_values), "unset": unset, "secret": secret})
        for name in targets:
            await self.engine_for(project).reconcile(project, name, fresh=True)
        return {"project": project, "deployed": deployed, "set": list(set_values), "unset": unset,
                "restarted": targets}
