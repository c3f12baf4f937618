"""Running a BuildPlan: the dependency layer (cached by key), then the build directory (cached by content).

Layout under STACKBLAZE_HOME:
  cache/deps/<cache key>/      the dependency layer, built at this final path (a venv is not relocatable);
                               the install step sees only the lockfiles, so a code edit reinstalls nothing
  builds/<project>/<build id>/ a built source tree: the service root's files, then `build` run in it;
                               services with the same root and build config share it
Both appear whole or not at all (a `.complete` marker is written last) and are never modified after.

The user env (the spec's `env:` and `env set` values, secrets included) is visible to install and build
steps; which of it takes part in which key is INSTALL_ENV's rule, below.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from stackblaze.build.explain import explain
from stackblaze.build.plan import BuildPlan
from stackblaze.build.release import IGNORED, SPEC_FILES, digest_tree
from stackblaze.errors import StackblazeError

COMPLETE = ".complete"
TAIL_LINES = 20
OUTPUT_LINES = 5000  # of a failed command's output, searched for the lines that say why
LINE_CHARS = 2000
Progress = Callable[[str], None]
MASK = "••••••"
# The venv's python comes first on the plan's PATH; -q prints only the files that fail.
COMPILE = "python -m compileall -q ."  # what a secret's value reads as in a build log (as in `env list`)

# The user env's part in the cache keys, one rule for both: the dependency layer's key takes the variables
# installers read (full names matched below: an index URL, a registry token, NODE_ENV, compiler flags), so
# a new PIP_INDEX_URL installs into a new layer and a new WORKER_CONCURRENCY reinstalls nothing; a build
# tree's id, when the plan has a `build` step, takes all of the user env. Only a keyed digest enters a key
# (HMAC-SHA256, key in cache/env-digest.key), so no value, a secret's least of all, can be read back from
# a directory name. The daemon's and the CLI's own environment (PATH included) take no part.
INSTALL_ENV = (
    r"PIP_\w+", r"UV_\w+", r"POETRY_\w+", r"PIPENV_\w+", r"PYTHON\w*",
    r"NPM_\w+", r"npm_config_\w+", r"YARN_\w+", r"PNPM_\w+", r"BUN_\w+", r"NODE_\w+", r"COREPACK_\w+",
    r"GO[A-Z0-9]+", r"CGO_\w+",  # GOPROXY, GOFLAGS, GOPRIVATE... (not GOOGLE_APPLICATION_CREDENTIALS)
    r"BUNDLE_\w+", r"GEM_\w+",
    r"CC|CXX|CPP|CFLAGS|CXXFLAGS|CPPFLAGS|LDFLAGS|PKG_CONFIG_PATH|LIBRARY_PATH|CPATH|MAKEFLAGS",
)
_INSTALL_ENV = re.compile("|".join(f"(?:{pattern})" for pattern in INSTALL_ENV))


def install_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` installers read (INSTALL_ENV): what the dependency layer's key takes."""
    return {key: value for key, value in env.items() if _INSTALL_ENV.fullmatch(key)}


class BuildFailed(StackblazeError):
    """An install or build command failed: `cause` holds the lines of its output that say why (see
    build.explain), `tail` its last lines, `log_path` the whole build log."""

    service: str | None = None  # set by the caller that knows which service was building

    def __init__(self, message: str, *, tail: list[str], log_path: Path, cause: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.cause = list(cause)
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


def plan_cache_key(source: Path, plan: BuildPlan, *, env_digest: str = "") -> str | None:
    """The dependency layer's key for the project at `source`; None when there is nothing to install.

    `env_digest` is that of the user env installers read ('' when there is none: the key is then the plan's
    alone, as `build --plan` shows it)."""
    if not plan.install:
        return None
    copy_dir = source / plan.copy_root
    digest = (digest_tree(copy_dir, skip=spec_files(plan)) if plan.install_needs_source
              else lockfile_digest(copy_dir, plan.lockfiles))
    key = plan.cache_key(digest)
    return hashlib.sha256(f"{key}\0{env_digest}".encode()).hexdigest()[:20] if env_digest else key


def spec_files(plan: BuildPlan) -> frozenset[str]:
    """The project's spec where it lies in the copied tree: stackblaze's, not part of the release."""
    return SPEC_FILES if plan.copy_root == "." else frozenset()


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
    """Builds one service's plans. `base_env` is the machine's (PATH: where its tools are); `user_env` is
    the service's own, over it and over the plan's env, as its replicas will see it; each value of
    `redact` (the secrets among user_env) reads as MASK in every line the builder writes or reports."""

    def __init__(self, *, cache_dir: Path, builds_dir: Path, base_env: Mapping[str, str],
                 user_env: Mapping[str, str] | None = None, redact: Collection[str] = ()) -> None:
        self._cache_dir = cache_dir
        self._deps_root = cache_dir / "deps"
        self._builds_dir = builds_dir
        self._base_env = dict(base_env)
        self._user_env = dict(user_env or {})
        # A multi-line secret (a PEM key) is printed line by line: each line is masked on its own. Longest
        # first, so a secret that contains another is masked whole.
        parts = {part for value in redact for part in (value, *value.splitlines()) if part.strip()}
        self._redact = sorted(parts, key=len, reverse=True)

    def build(self, plan: BuildPlan, *, source: Path, log_path: Path, progress: Progress) -> BuildResult:
        """Build `plan` for the project at `source`; the log goes to `log_path`."""
        started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            say = self._sayer(log, progress)

            say(f"==> {plan.service}: {plan.runtime} {plan.resolved_version or ''} "
                f"{('with ' + plan.package_manager) if plan.package_manager else ''}".rstrip())
            for warning in plan.warnings:
                say(f"warning: {warning}")
            try:
                deps_dir, key, installed = self._dependencies(plan, source, say, log_path)
                build_id = self._build_id(plan, source, key)
                path, built = self._tree(plan, source, build_id, deps_dir, say, log_path)
            except BuildFailed as failure:
                self._mask_failure(failure)
                raise
        return BuildResult(path, build_id, deps_dir, key, installed, built, time.monotonic() - started)

    def run(self, command: str, *, what: str, cwd: Path, env: Mapping[str, str], log_path: Path,
            progress: Progress, user: Mapping[str, Any] | None = None) -> None:
        """Run `command` (`sh -c`) with exactly `env` in `cwd`, as `user` (uid, gid, groups) when given, its
        output appended to `log_path` and said to `progress`, secrets masked; BuildFailed when it fails."""
        with open(log_path, "a") as log:
            say = self._sayer(log, progress)

            say(f"==> {what}: {command}")
            try:
                self._run(command, cwd=cwd, env=dict(env), say=say, what=what, log_path=log_path, user=user)
            except BuildFailed as failure:
                self._mask_failure(failure)
                raise

    def _sayer(self, log: IO[str], progress: Progress) -> Callable[[str], None]:
        """A line, secrets masked, into the build log (flushed: `logs --build` reads it live) and to progress."""
        def say(line: str) -> None:
            line = self._masked(line)
            log.write(line + "\n")
            log.flush()
            progress(line)
        return say

    def _masked(self, text: str) -> str:
        for secret in self._redact:
            text = text.replace(secret, MASK)
        return text

    def _mask_failure(self, failure: BuildFailed) -> None:
        """Mask secrets in what a failure carries to the user (its message, its lines), whatever its fields
        are: they are another part's to define, and each is shown or stored somewhere."""
        failure.args = tuple(self._masked(a) if isinstance(a, str) else a for a in failure.args)
        for name, value in list(vars(failure).items()):
            if isinstance(value, str):
                setattr(failure, name, self._masked(value))
            elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
                setattr(failure, name, type(value)(self._masked(item) for item in value))

    def _env_digest(self, env: Mapping[str, str]) -> str:
        """A keyed digest of `env` for a cache key, '' when empty (the key is then what it was without)."""
        if not env:
            return ""
        key_file = self._cache_dir / "env-digest.key"
        if not key_file.exists():
            with _locked(self._cache_dir / "env-digest.lock"):
                if not key_file.exists():  # written aside, then renamed: never seen half-written
                    partial = key_file.with_name(f".{key_file.name}.partial")
                    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(os.urandom(32))
                    os.replace(partial, key_file)
        material = json.dumps(sorted(env.items())).encode()
        return hmac.new(key_file.read_bytes(), material, hashlib.sha256).hexdigest()[:20]

    # -- the dependency layer ----------------------------------------------------------------------

    def _dependencies(self, plan: BuildPlan, source: Path, say: Progress, log_path: Path
                      ) -> tuple[Path | None, str | None, bool]:
        if not plan.install:
            say("==> no dependencies to install")
            return None, None, False
        key = plan_cache_key(source, plan, env_digest=self._env_digest(install_env(self._user_env)))
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
        env_digest = self._env_digest(self._user_env) if plan.build else ""  # no build step: env reaches nothing
        material = "\0".join([digest_tree(source / plan.copy_root, skip=spec_files(plan)), plan.copy_root, plan.root,
                              plan.build or "", key or "", plan.runtime, plan.resolved_version or "", *plan.links,
                              *([f"env:{env_digest}"] if env_digest else [])])
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
                if plan.runtime == "python":
                    self._byte_compile(plan, staging, deps_dir, say, log_path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            (staging / COMPLETE).write_text(build_id + "\n")
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        return target, True

    def _byte_compile(self, plan: BuildPlan, tree: Path, deps_dir: Path | None, say: Progress,
                      log_path: Path) -> None:
        """The release's .pyc files, made once with its own interpreter: replicas then never write them
        (a worker user cannot, and a release is never changed) nor compile at each start. A file that does
        not compile is the import's error to report, when it is imported: said here, never fatal."""
        say(f"==> byte-compiling: {COMPILE}")
        try:
            self._run(COMPILE, cwd=tree, env=self._env(plan, deps_dir), say=say, what="byte-compiling",
                      log_path=log_path)
        except BuildFailed as failure:
            say(f"warning: {failure} (the release is kept; those files compile when imported, or fail then)")

    # -- running commands --------------------------------------------------------------------------

    def _env(self, plan: BuildPlan, deps_dir: Path | None) -> dict[str, str]:
        """The machine's env, the plan's over it, the user's over both: the order a replica's env has."""
        env = dict(self._base_env)
        extra = runtime_env(plan, deps_dir)
        if "PATH" in extra:
            extra["PATH"] = extra["PATH"].replace("$PATH", env.get("PATH", os.defpath))
        env.update(extra)
        env.update(self._user_env)
        if deps_dir is not None:
            env["DEPS"] = str(deps_dir)
        return env

    def _run(self, command: str, *, cwd: Path, env: dict[str, str], say: Progress, what: str,
             log_path: Path, user: Mapping[str, Any] | None = None) -> None:
        # explain() needs more than the tail: pipenv prints ~70 lines of hashes after the line that says why.
        # It gets the last OUTPUT_LINES lines rather than the log file read again: the log mixes in our own
        # lines and the other steps', and the lines that explain a failure come near its end. Bounded, since
        # an installer may print a line per file (or one endless line).
        output: deque[str] = deque(maxlen=OUTPUT_LINES)
        with subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            **({"user": user["uid"], "group": user["gid"], "extra_groups": user.get("groups", [])} if user else {}),
        ) as process:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                output.append(line[:LINE_CHARS])
                say(f"    {line}")
            code = process.wait()
        if code != 0:
            lines = list(output)
            shown = "; ".join(part.strip() for part in command.splitlines() if part.strip())  # a `build: |` too
            raise BuildFailed(f"{what} failed (exit {code}): {shown} — full log: {log_path}",
                              cause=explain(lines), tail=lines[-TAIL_LINES:], log_path=log_path)
