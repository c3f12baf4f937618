"""Deploying a project: detect, build every service (or reuse its build), record releases, then roll.

Nothing changes unless every service built: a failing install or build leaves the running releases as
they were, and the error carries the failing command's last lines.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackblaze.build.builder import COMPLETE, Builder, BuildResult, runtime_env
from stackblaze.build.plan import BuildPlan
from stackblaze.state.store import ReleaseRow, ServiceRow

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
        "log_max_files": service.log_max_files,
    }




def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda line: progress(f"{name} | {line}")


class Deployer:
    def __init__(self, control: Control) -> None:
        self._control = control
        self._settings = control.settings
        self._store = control.store

    def builder(self, project: str) -> Builder:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
        return Builder(cache_dir=self._settings.cache_dir,
                       builds_dir=self._settings.releases_dir / project / "builds", base_env=base_env)

    def build_all(self, project: Project, progress: Progress) -> list[tuple[Service, BuildPlan, BuildResult]]:
        """Every service's plan and build; raises BuildFailed (nothing recorded) when one fails."""
        from stackblaze.build.detect import detect_plan

        builder = self.builder(project.name)
        toolchains = self._control.toolchains()
        built = []
        for service in project.services:
            plan = detect_plan(project.source, service, toolchains=toolchains)
            log_path = self._settings.releases_dir / project.name / service.name / "build.log"
            result = builder.build(plan, source=project.source, log_path=log_path,
                                   progress=_prefixed(progress, service.name))
            built.append((service, plan, result))
        return built

    async def deploy(self, path: str, progress: Progress) -> dict[str, Any]:
        from stackblaze.spec import load_project  # the YAML stack loads when a deploy needs it

        started = time.monotonic()
        project = await asyncio.to_thread(load_project, Path(path))
        for note in project.notes:
            progress(f"note: {note}")
        built = await asyncio.to_thread(self.build_all, project, progress)
        results = [self._record(project, service, plan, result) for service, plan, result in built]
        self._store.save_project(project.name, str(project.source),
                                 str(project.spec_file) if project.spec_file else None)
        names = {s.name for s in project.services}
        removed = [r.name for r in self._store.services(project.name) if r.name not in names]
        for name in removed:
            self._store.delete_service(project.name, name)
        summary = ", ".join(f"{r['service']}@{r['release']}" for r in results)
        self._control.event(project=project.name, kind="deploy", message=f"deployed {summary}",
                            details={"services": results, "removed": removed})
        for name in removed:
            await self._control.engine.reconcile(project.name, name)
        for item in results:
            await self._control.engine.reconcile(project.name, item["service"], fresh=True)
        await asyncio.to_thread(self._collect_garbage, project.name)
        return {"project": project.name, "services": results, "removed": removed, "notes": list(project.notes),
                "seconds": round(time.monotonic() - started, 3)}

    def _record(self, project: Project, service: Service, plan: BuildPlan, result: BuildResult) -> dict[str, Any]:
        digest = f"{result.build_id}:{plan.start}"
        latest = self._store.latest_release(project.name, service.name)
        new = latest is None or latest.digest != digest
        number = latest.number if latest is not None and not new else (latest.number + 1 if latest else 1)
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
                 "runtime_env": runtime_env(plan, result.deps_dir), "build_log": str(kept_log)},
            ))
            self._control.event(project=project.name, service=service.name, kind="build",
                                message=f"{service.name}: release {number} built in {result.seconds:.1f}s "
                                        f"({'installed' if result.installed else 'dependencies cached'})",
                                details={"release": number, "build_id": result.build_id,
                                         "installed": result.installed})
        old = self._store.service(project.name, service.name)
        self._store.save_service(ServiceRow(
            project.name, service.name, service_spec(project, service), service.replicas, number,
            old.running if old else True, old.generation if old else 0,
        ))
        return {"service": service.name, "release": number, "new_release": new, "replicas": service.replicas,
                "installed": result.installed, "built": result.built, "runtime": plan.runtime,
                "resolved_version": plan.resolved_version, "warnings": list(plan.warnings)}

    def _collect_garbage(self, project: str) -> None:
        """Keep the last KEEP_RELEASES releases of each service, the one running, and what they use: their
        build trees, and the dependency layers any project's kept release uses (or that are recent, so a
        deploy still building next to this one keeps its fresh layer)."""
        for row in self._store.services(project):
            releases = self._store.releases(project, row.name)
            for release in releases[:-KEEP_RELEASES]:
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
