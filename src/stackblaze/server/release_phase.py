"""The release phase: a service's `release:` command (a Procfile's `release:` line), run once per new release,
after every service built and before anything rolls out, as Heroku runs it.

It runs with `sh -c` in its own copy of the release tree (as a replica does: engine/workdirs.py), with the
env the replicas get (secrets included, masked in the log), as the replicas' user. Its output goes to the
service's build log (`logs --build`) and to deploy's progress. When it fails the deploy fails: the new
release is listed as `release-failed` and nothing rolls, so the running release keeps running. An
unchanged release (a redeploy of the same tree) does not run it again.

On a cluster target it also runs here, on the deploying machine, before anything is applied (there is no
one-off pod yet): its env must reach the target's database from here.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stackblaze.build.builder import BuildFailed, BuildResult, runtime_env
from stackblaze.build.plan import BuildPlan
from stackblaze.engine.workdirs import Workdirs
from stackblaze.state.store import EnvVar, ReleaseRow

if TYPE_CHECKING:
    from stackblaze.server.deploying import Deployer
    from stackblaze.spec import Project, Service
    from stackblaze.spec.targets import Target

Progress = Callable[[str], None]
Built = list[tuple["Service", BuildPlan, BuildResult]]


def run_release_commands(deployer: Deployer, project: Project, built: Built, progress: Progress, *,
                         target: Target, path_env: str | None) -> None:
    """Each new release's command, in the services' order; raises BuildFailed (recorded) at the first that
    fails, before any other service's release is recorded."""
    stored = deployer.store.env(project.name)
    for service, plan, result in built:
        if service.release is None:
            continue
        number, new = deployer.release_number(project.name, service.name, f"{result.build_id}:{plan.start}")
        say = _prefixed(progress, service.name)
        if not new:
            say(f"==> release command not run: release {number} is unchanged")
            continue
        if not target.is_local:
            say("note: the release command runs here, on this machine, not in the cluster (with the target's env)")
        _run_one(deployer, project, service, plan, result, number=number, stored=stored, say=say,
                 path_env=path_env)


def _run_one(deployer: Deployer, project: Project, service: Service, plan: BuildPlan, result: BuildResult, *,
             number: int, stored: list[EnvVar], say: Progress, path_env: str | None) -> None:
    from stackblaze.server.deploying import service_spec

    control = deployer.control
    settings = control.settings
    user = control.workers.resolve(service.user)
    spawn_user = user.spawn_fields() if user is not None else None
    deps = runtime_env(plan, result.deps_dir)
    env, _ = control.replica_env(project.name, service.name, service_spec(project, service), deps, user)
    env.update({"STACKBLAZE_SERVICE": service.name, "STACKBLAZE_RELEASE": str(number)})
    if user is not None:  # the worker user reads the tree (to copy it, we do) and the dependency layer
        control.share_release(ReleaseRow(project.name, service.name, number, str(result.path), "", time.time(), {
            "build_id": result.build_id, "deps_dir": str(result.deps_dir) if result.deps_dir else None}))
    log_path = settings.releases_dir / project.name / service.name / "build.log"
    workdirs = Workdirs(settings.releases_dir)
    key = f"{project.name}.{service.name}.release-{number}.{uuid.uuid4().hex[:8]}"
    builder = deployer.builder(project, service, stored=stored, path_env=path_env)
    started = time.monotonic()
    try:
        cwd = workdirs.prepare(project=project.name, key=key, cwd=str(result.path / plan.workdir), user=spawn_user)
        builder.run(service.release or "", what="release command", cwd=Path(cwd), env=env, log_path=log_path,
                    progress=say, user=spawn_user)
    except BuildFailed as exc:
        exc.service = service.name
        _record_failure(deployer, project.name, service.name, number, exc)
        raise
    finally:
        workdirs.discard(project.name, key)
    seconds = time.monotonic() - started
    say(f"==> release command done in {seconds:.1f}s")
    control.event(project=project.name, service=service.name, kind="release-command",
                  message=f"{service.name}: release {number}'s release command done in {seconds:.1f}s",
                  details={"release": number, "command": service.release, "seconds": round(seconds, 3)})


def _record_failure(deployer: Deployer, project: str, service: str, number: int, exc: BuildFailed) -> None:
    """As a failed build is: an attempt `releases` lists, its log kept, and an event with its last lines."""
    kept_log = exc.log_path.with_name(f"{number}.build.log")
    if exc.log_path.exists():
        shutil.copyfile(exc.log_path, kept_log)
        exc.log_path = kept_log
    deployer.store.add_release(ReleaseRow(project, service, number, "", f"failed:{number}", time.time(), {
        "status": "release-failed", "error": str(exc), "cause": exc.cause, "build_log": str(kept_log)}))
    deployer.control.event(project=project, service=service, kind="release-failed",
                           message=f"{service}: release {number}'s release command failed: {exc}",
                           details={"release": number, "error": str(exc), "cause": exc.cause,
                                    "last_lines": exc.tail[-10:], "build_log": str(kept_log)})


def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda line: progress(f"{name} | {line}")
