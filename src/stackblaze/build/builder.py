"""Running a BuildPlan: the dependency layer (cached by key), then the build directory (cached by content).

Layout under STACKBLAZE_HOME:
  cache/deps/<cache key>/      the dependency layer, built at this final path (a venv is not relocatable);
                               the install step sees only the lockfiles, so a code edit reinstalls nothing
  builds/<project>/<build id>/ a built source tree: the service root's files, then `build` run in it;
                               services with the same root and build config share it
Both appear whole or not at all (a `.complete` marker is written last) and are never modified after.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from stackblaze.build.plan import BuildPlan
from stackblaze.build.release import IGNORED, digest_tree
from stackblaze.errors import StackblazeError

COMPLETE = ".complete"
TAIL_LINES = 20
Progress = Callable[[str], None]


class BuildFailed(StackblazeError):
    """An install or build command failed; the message carries its last lines."""

    def __init__(self, message: str, *, tail: list[str], log_path: Path) -> None:
        super().__init__(message)
        self.tail = tail
        self.log_path = log_path


@dataclass(frozen=True)
class BuildResult:
    path: Path  # the built tree (a copy of plan.copy_root); the service runs in path / plan.workdir
    build_id: str
    deps_dir: Path | None
    cache_key: str | None
    installed: bool  # the installer ran (False: the dependency layer came from the cache)
    built: bool  # a new build tree was made (False: reused)
    seconds: float


def lockfile_digest(root: Path, lockfiles: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in sorted(lockfiles):
        path = root / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def plan_cache_key(source: Path, plan: BuildPlan) -> str | None:
    """The dependency layer's key for the project at `source`; None when there is nothing to install."""
    if not plan.install:
        return None
    copy_dir = source / plan.copy_root
    digest = digest_tree(copy_dir) if plan.install_needs_source else lockfile_digest(copy_dir, plan.lockfiles)
    return plan.cache_key(digest)


def runtime_env(plan: BuildPlan, deps_dir: Path | None) -> dict[str, str]:
    """plan.env with `$DEPS` replaced by the dependency layer's path (`$PATH` stays for the caller)."""
    deps = str(deps_dir) if deps_dir is not None else ""
    return {key: value.replace("$DEPS", deps) for key, value in plan.env.items()}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache entry (two deploys, or two services sharing a root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _link(path: Path, target: Path) -> None:
    """Make `path` a symlink to `target`, replacing whatever the source tree had there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


class Builder:
    def __init__(self, *, cache_dir: Path, builds_dir: Path, base_env: Mapping[str, str]) -> None:
        self._deps_root = cache_dir / "deps"
        self._builds_dir = builds_dir
        self._base_env = dict(base_env)

    def build(self, plan: BuildPlan, *, source: Path, log_path: Path, progress: Progress) -> BuildResult:
        """Build `plan` for the project at `source`; the log goes to `log_path`."""
        started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            def say(line: str) -> None:
                log.write(line + "\n")
                log.flush()
                progress(line)

            say(f"==> {plan.service}: {plan.runtime} {plan.resolved_version or ''} "
                f"{('with ' + plan.package_manager) if plan.package_manager else ''}".rstrip())
            for warning in plan.warnings:
                say(f"warning: {warning}")
            deps_dir, key, installed = self._dependencies(plan, source, say, log_path)
            build_id = self._build_id(plan, source, key)
            path, built = self._tree(plan, source, build_id, deps_dir, say, log_path)
        return BuildResult(path, build_id, deps_dir, key, installed, built, time.monotonic() - started)

    # -- the dependency layer ----------------------------------------------------------------------

    def _dependencies(self, plan: BuildPlan, source: Path, say: Progress, log_path: Path
                      ) -> tuple[Path | None, str | None, bool]:
        if not plan.install:
            say("==> no dependencies to install")
            return None, None, False
        key = plan_cache_key(source, plan)
        assert key is not None
        copy_dir = source / plan.copy_root
        deps_dir = self._deps_root / key
        with _locked(self._deps_root / f"{key}.lock"):
            if (deps_dir / COMPLETE).exists():
                say(f"==> dependencies unchanged (cache {key}): nothing to install")
                return deps_dir, key, False
            shutil.rmtree(deps_dir, ignore_errors=True)
            deps_dir.mkdir(parents=True)
            scratch = self._deps_root / f".{key}.inputs"
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                if plan.install_needs_source:  # `pip install .`: the project is its own dependency
                    shutil.copytree(copy_dir, scratch, symlinks=True, ignore=shutil.ignore_patterns(*IGNORED))
                else:
                    scratch.mkdir(parents=True)
                for name in plan.lockfiles:  # only the lockfiles: a code edit never invalidates this layer
                    if (copy_dir / name).is_file():
                        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(copy_dir / name, scratch / name)
                say(f"==> installing dependencies (cache {key}): {plan.install}")
                self._run(plan.install, cwd=scratch, env=self._env(plan, deps_dir), say=say,
                          what="install", log_path=log_path)
            except BaseException:
                shutil.rmtree(deps_dir, ignore_errors=True)
                raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            (deps_dir / COMPLETE).write_text(plan.install + "\n")
        return deps_dir, key, True

    # -- the built tree ----------------------------------------------------------------------------

    def _build_id(self, plan: BuildPlan, source: Path, key: str | None) -> str:
        material = "\0".join([digest_tree(source / plan.copy_root), plan.copy_root, plan.root, plan.build or "",
                              key or "", plan.runtime, plan.resolved_version or "", *plan.links])
        return hashlib.sha256(material.encode()).hexdigest()[:20]

    def _tree(self, plan: BuildPlan, source: Path, build_id: str, deps_dir: Path | None, say: Progress,
              log_path: Path) -> tuple[Path, bool]:
        target = self._builds_dir / build_id
        with _locked(self._builds_dir / f"{build_id}.lock"):
            if (target / COMPLETE).exists():
                say(f"==> source and build unchanged (build {build_id}): reusing it")
                return target, False
            staging = self._builds_dir / f".{build_id}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source / plan.copy_root, staging, symlinks=True,
                            ignore=shutil.ignore_patterns(*IGNORED))
            for name in plan.links if deps_dir is not None else ():
                assert deps_dir is not None
                if (deps_dir / name).exists():
                    _link(staging / name, deps_dir / name)  # e.g. node_modules -> the dependency layer
            try:
                if plan.build:
                    say(f"==> building: {plan.build}")
                    self._run(plan.build, cwd=staging / plan.workdir, env=self._env(plan, deps_dir), say=say,
                              what="build", log_path=log_path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            (staging / COMPLETE).write_text(build_id + "\n")
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        return target, True

    # -- running commands --------------------------------------------------------------------------

    def _env(self, plan: BuildPlan, deps_dir: Path | None) -> dict[str, str]:
        env = dict(self._base_env)
        extra = runtime_env(plan, deps_dir)
        if "PATH" in extra:
            extra["PATH"] = extra["PATH"].replace("$PATH", env.get("PATH", os.defpath))
        env.update(extra)
        if deps_dir is not None:
            env["DEPS"] = str(deps_dir)
        return env

    def _run(self, command: str, *, cwd: Path, env: dict[str, str], say: Progress, what: str,
             log_path: Path) -> None:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        with subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        ) as process:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                tail.append(line)
                say(f"    {line}")
            code = process.wait()
        if code != 0:
            raise BuildFailed(
                f"{what} failed (exit {code}): {command} — last lines below, full log: {log_path}",
                tail=list(tail), log_path=log_path,
            )
