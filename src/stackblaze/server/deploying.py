"""Deploying a project: detect, build every service (or reuse its build), record releases, then roll.

Nothing changes unless every service built: a failing install or build leaves the running releases as
they were, and the error carries the failing command's last lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackblaze.build.builder import COMPLETE, Builder, BuildFailed, BuildResult, runtime_env
from stackblaze.build.plan import BuildPlan
from stackblaze.engine.autoscale.decide import count_for_deploy, kubernetes_notes
from stackblaze.server.release_phase import run_release_commands
from stackblaze.server.user_env import merge_user_env
from stackblaze.spec import fields
from stackblaze.spec.targets import Target, TargetRequest, resolve_target, split_key
from stackblaze.state.store import EnvVar, ReleaseRow, ServiceRow, Store

if TYPE_CHECKING:
    from stackblaze.server.control import Control
    from stackblaze.spec import Project, Service

KEEP_RELEASES = 5
LAYER_GRACE = 3600.0  # an unused dependency layer younger than this is kept
Progress = Callable[[str], None]


def service_spec(project: Project, service: Service) -> dict[str, Any]:
    return {
        "type": service.type, "root": service.root, "env": dict(service.env),
        "stop_signal": service.stop_signal, "stop_signal_number": service.stop_signal_number,
        "shutdown_grace": service.shutdown_grace, "strategy": service.strategy, "build": service.build,
        "project_env": dict(project.env), "log_max_bytes": service.log_max_bytes,
        "log_max_files": service.log_max_files, "min_ready": service.min_ready,
        "progress_deadline": service.progress_deadline, "rolling": service.rolling.to_dict(),
        "replicas": service.replicas,  # the spec's count: a scale is kept until this changes
        "user": service.user,
        "cron": service.cron.to_dict() if service.cron else None,  # type: cron: its schedule (server/cron_desired.py)
        "disk": service.disk.to_dict() if service.disk else None,  # server/disks.py
        "autoscale": service.autoscale.to_dict() if service.autoscale else None,  # server/autoscaling.py
    }




def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda line: progress(f"{name} | {line}")


class Deployer:
    def __init__(self, control: Control) -> None:
        self._control = control
        self._settings = control.settings
        self._store = control.store

    def builder(self, project: Project, service: Service, *, stored: list[EnvVar], path_env: str | None
                ) -> Builder:
        """A builder for one service: the daemon's env (the deploying CLI's PATH when given) under the
        service's user env, which its replicas will see too; the secrets among it are masked in the log."""
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
        if path_env is not None:
            base_env["PATH"] = path_env
        user = merge_user_env(project_env=project.env, service_env=service.env, stored=stored, service=service.name)
        user = self._control.backing.expand(project.name, user)  # ${{cache.REDIS_URL}} (its password masked)
        # The spec checked its own env; with the `env set` values too, it must still reach a process.
        fields.check_env_total(user.values, where=f"{service.name}: env (the spec's and env set's)",
                               reserve=fields.PLATFORM_ENV_RESERVE)
        return Builder(cache_dir=self._settings.cache_dir,
                       builds_dir=self._settings.releases_dir / project.name / "builds", base_env=base_env,
                       user_env=user.values, redact=user.secrets)

    def build_all(self, project: Project, progress: Progress, *, path_env: str | None = None
                  ) -> list[tuple[Service, BuildPlan, BuildResult]]:
        """Every service's plan and build; raises BuildFailed (nothing recorded) when one fails."""
        from stackblaze.build.detect import detect_plan

        toolchains = self._control.toolchains(path_env)
        stored = self._store.env(project.name)  # set before the first deploy too
        built = []
        for service in project.services:
            if service.is_backing:  # the machine's own server: nothing to build (server/backing.py)
                continue
            plan = detect_plan(project.source, service, toolchains=toolchains)
            log_path = self._settings.releases_dir / project.name / service.name / "build.log"
            builder = self.builder(project, service, stored=stored, path_env=path_env)
            try:
                result = builder.build(plan, source=project.source, log_path=log_path,
                                       progress=_prefixed(progress, service.name))
            except BuildFailed as exc:
                exc.service = service.name
                raise
            built.append((service, plan, result))
        return built

    async def deploy(self, path: str, progress: Progress, *, path_env: str | None = None,
                     detach: bool = False, target: TargetRequest | None = None) -> dict[str, Any]:
        """Build, record, start the rollouts and (unless `detach`) wait for them. The result's `ok` is
        False when a rollout failed; a failed build raises BuildFailed after recording the attempt.
        `target`: the --target name and the --context/--namespace/--registry flags (None: local)."""
        from stackblaze.spec import load_project  # the YAML stack loads when a deploy needs it

        started = time.monotonic()
        project = await asyncio.to_thread(load_project, Path(path))
        name, context, namespace, registry = target or (None, None, None, None)
        where = resolve_target(project.targets, name, context=context, namespace=namespace, registry=registry)
        if not where.is_local:
            # The target's own releases, scale, env and events: stored under `project@target`.
            app = project.name
            project = dataclasses.replace(project, name=where.store_key(app))
            progress(f"target: {where.describe()}")
            await self._control.connect(where)  # before building: an unknown context fails at once
        notes = ((*project.notes, *self._control.check_workers(project)) if where.is_local
                 else (*project.notes, *kubernetes_notes(project)))
        for note in notes:
            progress(f"note: {note}")
        # Known from the start, so that a failed first deploy still has events and a build log to show.
        self._store.save_project(project.name, str(project.source),
                                 str(project.spec_file) if project.spec_file else None)
        backing = self._control.backing
        # Addresses and passwords first (references expand in builds too); a port held already fails here.
        await asyncio.to_thread(backing.ensure, project, where)
        try:
            built = await asyncio.to_thread(self.build_all, project, progress, path_env=path_env)
        except BuildFailed as exc:
            self._record_failure(project.name, exc)
            raise
        await asyncio.to_thread(run_release_commands, self, project, built, progress, target=where,
                                path_env=path_env)
        images = {} if where.is_local else await asyncio.to_thread(self.publish_all, project, where, built, progress,
                                                                   path_env=path_env)
        metrics_image = None if where.is_local else await asyncio.to_thread(self.publish_queue_metrics, project,
                                                                            where, progress)
        served = [await asyncio.to_thread(backing.record, self, project, service, where)
                  for service in project.services if service.is_backing]
        results = served + [self._record(project, service, plan, result, target=where, image=images.get(service.name),
                                         queue_metrics_image=metrics_image)
                            for service, plan, result in built]
        for item in results:
            if item["scale_note"]:
                progress(item["scale_note"])
        names = {s.name for s in project.services}
        removed = [r.name for r in self._store.services(project.name) if r.name not in names]
        for name in removed:
            self._store.delete_service(project.name, name)
        summary = ", ".join(f"{r['service']}@{r['release']}" for r in results)
        self._control.event(project=project.name, kind="deploy", message=f"deployed {summary}",
                            details={"services": results, "removed": removed})
        engine = self._control.engine_for(project.name)
        for name in removed:
            await engine.reconcile(project.name, name)
        backing.forget(project.name, removed)
        # Backing services first, each answering its probe, before any worker starts against it.
        rollouts = await backing.roll(project.name, served, progress)
        for item in results[len(served):]:
            before = engine.rollout(project.name, item["service"])
            await engine.reconcile(project.name, item["service"], fresh=True)
            after = engine.rollout(project.name, item["service"])
            rollouts[item["service"]] = after if after is not before else None
        await asyncio.to_thread(self._collect_garbage, project.name)
        outcome: dict[str, Any] = {"project": project.name, "services": results, "removed": removed,
                                   "notes": list(project.notes), "detached": detach, "target": where.to_dict()}
        if not detach:
            for item, ended in zip(results, await self._control.wait_rollouts(project.name, rollouts, progress),
                                   strict=True):
                item["rollout"] = ended
        outcome["ok"] = all(item.get("rollout", {}).get("state") != "failed" for item in results)
        outcome["seconds"] = round(time.monotonic() - started, 3)
        return outcome

    def _record_failure(self, project: str, exc: BuildFailed) -> None:
        """A failed build is an attempt: listed by `releases`, its log kept, and an event."""
        service = exc.service or "?"
        attempts = self._store.releases(project, service)
        number = attempts[-1].number + 1 if attempts else 1
        kept_log = exc.log_path.with_name(f"{number}.build.log")
        if exc.log_path.exists():
            shutil.copyfile(exc.log_path, kept_log)
            exc.log_path = kept_log  # the "full log" a user is pointed to: build.log is the next attempt's
        cause = list(getattr(exc, "cause", []) or [])
        self._store.add_release(ReleaseRow(project, service, number, "", f"failed:{number}", time.time(), {
            "status": "build-failed", "error": str(exc), "cause": cause, "build_log": str(kept_log)}))
        self._control.event(project=project, service=service, kind="build-failed",
                            message=f"{service}: build {number} failed: {exc}",
                            details={"release": number, "error": str(exc), "cause": cause,
                                     "last_lines": exc.tail[-10:], "build_log": str(kept_log)})

    @property
    def control(self) -> Control:
        return self._control

    @property
    def store(self) -> Store:
        return self._store

    def release_number(self, project: str, service: str, digest: str) -> tuple[int, bool]:
        return self._number(project, service, digest)

    def _number(self, project: str, service: str, digest: str) -> tuple[int, bool]:
        """The release a build with `digest` is (the latest again when nothing changed), and whether it is new."""
        latest = self._store.latest_release(project, service, built=True)
        new = latest is None or latest.digest != digest
        newest = self._store.latest_release(project, service)  # failed attempts take numbers too
        return (latest.number if latest is not None and not new else (newest.number + 1 if newest else 1)), new

    def publish_all(self, project: Project, target: Target, built: list[tuple[Service, BuildPlan, BuildResult]],
                    progress: Progress, *, path_env: str | None) -> dict[str, str]:
        """The image of each new release for a cluster target: built and pushed to the target's registry,
        referenced by digest. A fake target without a registry runs no image: it gets a name only."""
        from stackblaze.build.detect import detect_plan
        from stackblaze.build.image import ImageToolchains
        from stackblaze.build.registry import publish_image

        app = split_key(project.name)[0]
        images: dict[str, str] = {}
        for service, plan, result in built:
            number, new = self._number(project.name, service.name, f"{result.build_id}:{plan.start}")
            if not new:
                continue
            if target.registry is None:
                images[service.name] = f"{app}-{service.name}:{result.build_id[:12]}"
                continue
            image_plan = detect_plan(project.source, service,
                                     toolchains=ImageToolchains(self._control.toolchains(path_env)))
            progress(f"{service.name} | building the image of release {number} for {target.registry}")
            images[service.name] = publish_image(
                image_plan, project.source / image_plan.copy_root, project=app, service=service.name,
                release=number, registry=target.registry, insecure=target.insecure_registry,
                stop_signal=service.stop_signal, output=_prefixed(progress, service.name))
            progress(f"{service.name} | pushed {images[service.name]}")
        return images

    def publish_queue_metrics(self, project: Project, target: Target, progress: Progress) -> str | None:
        """The queue-metrics server's image, by digest, when a worker's queues need the server on this target
        (build/queue_metrics_image.py: built and pushed once per stackblaze build and registry)."""
        from stackblaze.build.queue_metrics_image import publish_for

        image = publish_for(project, target, cache=self._settings.cache_dir,
                            output=_prefixed(progress, "queue-metrics"))
        if image is not None:
            progress(f"queue-metrics | image {image}")
        return image

    def _record(self, project: Project, service: Service, plan: BuildPlan, result: BuildResult, *,
                target: Target, image: str | None = None, queue_metrics_image: str | None = None) -> dict[str, Any]:
        digest = f"{result.build_id}:{plan.start}"
        number, new = self._number(project.name, service.name, digest)
        log_path = self._settings.releases_dir / project.name / service.name / "build.log"
        kept_log = log_path.with_name(f"{number}.build.log")
        if log_path.exists():
            shutil.copyfile(log_path, kept_log)
        if new:
            self._store.add_release(ReleaseRow(
                project.name, service.name, number, str(result.path / plan.workdir), digest, time.time(),
                {"start": plan.start, "plan": plan.to_dict(), "build_id": result.build_id,
                 "cache_key": result.cache_key, "deps_dir": str(result.deps_dir) if result.deps_dir else None,
                 "installed": result.installed, "built": result.built, "seconds": round(result.seconds, 3),
                 "runtime": plan.runtime, "resolved_version": plan.resolved_version,
                 "runtime_env": runtime_env(plan, result.deps_dir), "build_log": str(kept_log),
                 **({"image": image} if image else {})},
            ))
            self._control.event(project=project.name, service=service.name, kind="build",
                                message=f"{service.name}: release {number} built in {result.seconds:.1f}s "
                                        f"({'installed' if result.installed else 'dependencies cached'})",
                                details={"release": number, "build_id": result.build_id,
                                         "installed": result.installed})
        old = self._store.service(project.name, service.name)
        replicas, note = service.replicas, None
        # As `kubectl apply` keeps a scaled Deployment: the spec's count applies when it changes.
        if old is not None and old.spec.get("replicas", old.replicas) == service.replicas != old.replicas:
            replicas = old.replicas
            note = f"{service.name}: keeping {old.replicas} replicas (set by scale; the spec says {service.replicas})"
        if service.autoscale is not None:  # the autoscaler owns the count: a deploy keeps it, within min..max
            scaled = old is not None and bool(old.spec.get("autoscale"))
            replicas = count_for_deploy(service.autoscale, old.replicas if old is not None and scaled else None)
            bounds = f"{service.autoscale.min}..{service.autoscale.max}"
            note = f"{service.name}: autoscaled ({bounds}), keeping {replicas} replicas" if scaled else None
        spec = service_spec(project, service)
        if not target.is_local:
            spec["target"] = target.to_dict()
        if queue_metrics_image is not None:  # the Kubernetes engine's queue-metrics Deployment pins it
            spec["queue_metrics_image"] = queue_metrics_image
        self._store.save_service(ServiceRow(
            project.name, service.name, spec, replicas, number,
            old.running if old else True, old.generation if old else 0,
        ))
        if old is not None and replicas != old.replicas:
            self._control.event(project=project.name, service=service.name, kind="scale",
                                message=f"{service.name} scaled {old.replicas} -> {replicas} (replicas: in the spec)",
                                details={"from": old.replicas, "to": replicas, "by": "spec"})
        return {"service": service.name, "type": service.type, "release": number, "new_release": new,
                "replicas": replicas,
                "spec_replicas": service.replicas, "scale_note": note,
                "installed": result.installed, "built": result.built, "runtime": plan.runtime,
                "resolved_version": plan.resolved_version, "warnings": list(plan.warnings)}

    def _collect_garbage(self, project: str) -> None:
        """Keep the last KEEP_RELEASES releases of each service, the one running, and what they use: their
        build trees, and the dependency layers any project's kept release uses (or that are recent, so a
        deploy still building next to this one keeps its fresh layer)."""
        for row in self._store.services(project):
            releases = self._store.releases(project, row.name)
            built = [r for r in releases if r.built]
            failed = [r for r in releases if not r.built]  # kept as many, apart: they never push out a good one
            for release in built[:-KEEP_RELEASES] + failed[:-KEEP_RELEASES]:
                if release.number != row.release:
                    self._store.delete_release(project, row.name, release.number)
                    Path(release.details.get("build_log", "")).unlink(missing_ok=True)
        kept = self._store.all_releases()
        in_use = {release.details.get("build_id") for release in kept}
        builds = self._settings.releases_dir / project / "builds"
        if builds.is_dir():
            for tree in builds.iterdir():
                if tree.is_dir() and not tree.name.startswith(".") and tree.name not in in_use:
                    shutil.rmtree(tree, ignore_errors=True)
                    tree.with_name(f"{tree.name}.lock").unlink(missing_ok=True)
        layers_in_use = {release.details.get("deps_dir") for release in kept}
        deps = self._settings.cache_dir / "deps"
        cutoff = time.time() - LAYER_GRACE
        if deps.is_dir():
            for layer in deps.iterdir():
                done = layer / COMPLETE
                if (layer.is_dir() and str(layer) not in layers_in_use and done.exists()
                        and done.stat().st_mtime < cutoff):
                    shutil.rmtree(layer, ignore_errors=True)
                    layer.with_name(f"{layer.name}.lock").unlink(missing_ok=True)
