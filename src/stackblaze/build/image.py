"""OCI images: render a Containerfile from a BuildPlan, then build it with buildah, podman or docker.

Layout inside the image: the plan's copy_root at `/app` (build and start run at its workdir), the dependency
layer at `/app/.deps` (`$DEPS`, built in a stage that sees only the lockfiles, so a code edit reuses the
cached install layer).

The CA bundle: behind a TLS-inspecting proxy, installers inside the build fail unless they trust the
proxy's CA. The bundle (`$SSL_CERT_FILE`, else `/etc/ssl/certs/ca-certificates.crt`) is passed as the build
secret `stackblaze-ca` (`--secret id=stackblaze-ca,src=...`, the same flag for buildah, podman and docker
with BuildKit); `RUN --mount=type=secret` mounts it read-only for the install and build steps only, and
the installers' CA variables are exported inside those steps. Nothing of it is in any layer or in the
image's config.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stackblaze.build.plan import BuildPlan
from stackblaze.build.release import IGNORED
from stackblaze.build.toolchains import Interpreter, Language, Toolchains
from stackblaze.errors import StackblazeError, UserError
from stackblaze.spec.commands import start_argv

APP_DIR = "/app"
DEPS_DIR = "/app/.deps"
INSTALL_DIR = "/stackblaze/install"  # the install step's cwd in the dependency stage (not in the image)
USER = "10001:10001"  # numeric: needs no /etc/passwd or adduser in the base
CA_SECRET = "stackblaze-ca"
CA_TARGET = "/run/secrets/stackblaze-ca.crt"
# Each installer has its own idea of where CAs live; these cover pip, requests/poetry, uv, npm/bun (node),
# yarn berry, go, ruby, curl and git.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "NODE_EXTRA_CA_CERTS",
                "YARN_HTTPS_CA_FILE_PATH", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILDERS = ("buildah", "podman", "docker")
# buildah's defaults that work without overlayfs or a container runtime (a sandbox, CI, rootless).
DEFAULT_BUILDER_ARGS = {"buildah": "--storage-driver vfs --isolation chroot"}
TAIL_LINES = 20

# Per runtime: (build base, run base or None for the same). `{v}` is the version detection resolved.
DEFAULT_BASES: dict[str, tuple[str, str | None]] = {
    "python": ("python:{v}-slim", None),
    "node": ("node:{v}-slim", None),
    "go": ("golang:{v}", "debian:bookworm-slim"),  # a compiled binary needs no toolchain at run time
    "ruby": ("ruby:{v}-slim", None),
    "procfile": ("debian:bookworm-slim", None),
}
DEFAULT_VERSIONS = {"python": "3.11", "node": "20", "go": "1.19", "ruby": "3.1"}
VERSION_PARTS = {"python": 2, "node": 1, "go": 2, "ruby": 2}  # python:3.11, node:20, golang:1.19

DEPS_REFERENCE = re.compile(r"\$(?:\{DEPS\}|DEPS(?![A-Za-z0-9_]))")
PATH_REFERENCE = re.compile(r"\$(?!\{PATH\}|PATH(?![A-Za-z0-9_]))")  # a `$` that is not `$PATH`
DOLLAR = re.compile(r"\$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAFE_PATH = re.compile(r"^[A-Za-z0-9_.@+/-]+$")


class ImageBuildError(StackblazeError):
    """No image builder could be used, or the build failed; the message says what to do."""


@dataclass(frozen=True)
class ImageResult:
    service: str
    tag: str
    builder: str
    containerfile: str
    command: tuple[str, ...]


# -- rendering (pure) ------------------------------------------------------------------------------


def render_containerfile(
    plan: BuildPlan, *, base: str, run_base: str | None = None, lockfiles: Sequence[str] | None = None,
    stop_signal: str = "SIGTERM", init: str | None = None, ca_bundle: bool = False,
    project: str | None = None, release: str | None = None, user: str = USER,
) -> str:
    """The Containerfile for `plan`, its build context being the plan's `copy_root`: a dependency stage that
    sees only the lockfiles, then the source, the links into `$DEPS`, the build, and the image's config.

    `lockfiles` are the plan's lockfiles that exist (default: all of them); `init` is an init in the base
    (e.g. "tini") to run the command under; `ca_bundle` mounts the build secret `stackblaze-ca` into the
    RUN steps; `run_base` (e.g. a slim image for a compiled Go binary) adds a final stage of its own.
    """
    files = list(plan.lockfiles if lockfiles is None else lockfiles)
    split = run_base is not None and run_base != base
    workdir = posixpath.normpath(posixpath.join(APP_DIR, plan.workdir))
    lines = [f"# {plan.service}: {plan.runtime} image rendered by `stackblaze build --image`"]
    if ca_bundle:
        lines.append(f"# build with the CA bundle as a secret: --secret id={CA_SECRET},src={SYSTEM_CA_BUNDLE}")
    env_lines = _env_lines(plan.env)
    if plan.install:
        # The install runs beside the layer, not in it: as in the local builder, its cwd holds only its inputs.
        lines += ["", f"FROM {base} AS deps", f"WORKDIR {INSTALL_DIR}", *env_lines]
        lines += ["COPY . ./"] if plan.install_needs_source else _copy_lockfiles(files)
        lines.append(_run(plan.install, ca_bundle=ca_bundle))
    lines += ["", f"FROM {base} AS build" if split else f"FROM {base}", f"WORKDIR {APP_DIR}"]
    if plan.install:
        lines.append(f"COPY --from=deps {DEPS_DIR} {DEPS_DIR}")
    lines += env_lines
    lines.append("COPY . ./")
    if plan.install and plan.links:
        lines.append("RUN " + " && ".join(_link(path) for path in plan.links))
    if workdir != APP_DIR:
        lines.append(f"WORKDIR {workdir}")
    if plan.build:
        lines.append(_run(plan.build, ca_bundle=ca_bundle))
    if split:
        if plan.runtime == "go" and plan.install:
            lines.append(f"RUN rm -rf {DEPS_DIR}")  # the module cache: the binary does not need it
        lines += ["", f"FROM {run_base}", f"COPY --from=build {APP_DIR} {APP_DIR}", f"WORKDIR {workdir}"]
        lines += env_lines
    labels = {"dev.stackblaze.service": plan.service, "dev.stackblaze.runtime": plan.runtime}
    if project:
        labels["dev.stackblaze.project"] = project
    if release:
        labels["dev.stackblaze.release"] = release
    lines.append("LABEL " + " ".join(f"{key}={_quote(value)}" for key, value in labels.items()))
    lines += [f"USER {user}", f"STOPSIGNAL {stop_signal}"]
    if init:
        lines.append(f"ENTRYPOINT {json.dumps([init, '--'])}")
    lines.append(f"CMD {json.dumps(start_argv(plan.start))}")
    return "\n".join(lines) + "\n"


def _link(path: str) -> str:
    """As the local builder does: a path of the tree that the dependency layer also has becomes a link to
    the layer's (e.g. node_modules)."""
    clean = posixpath.normpath(path)
    target, parent = shlex.quote(f"{DEPS_DIR}/{clean}"), posixpath.dirname(clean)
    make_parent = f"mkdir -p {shlex.quote(parent)} && " if parent else ""
    return (f"if [ -e {target} ]; then rm -rf {shlex.quote(clean)} && {make_parent}"
            f"ln -s {target} {shlex.quote(clean)}; fi")


def image_env(env: Mapping[str, str]) -> dict[str, str]:
    """plan.env as the image sees it: `$DEPS` is the dependency layer's path; `$PATH` stays for ENV."""
    return {key: DEPS_REFERENCE.sub(DEPS_DIR, value) for key, value in env.items()}


def _env_lines(env: Mapping[str, str]) -> list[str]:
    resolved = image_env(env)
    for key, value in resolved.items():
        if not ENV_KEY.match(key) or "\n" in value:
            raise UserError(f"image env {key}={value!r}: a name of letters, digits and _, and a one-line value")
    return [f"ENV {key}={_quote(value, keep_path=True)}" for key, value in resolved.items()]


def _quote(value: str, *, keep_path: bool = False) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    # Every `$` is literal except `$PATH` in env, which ENV expands from the base image's PATH: the PATH the
    # process would have without the plan, as plan.py says.
    escaped = (PATH_REFERENCE if keep_path else DOLLAR).sub(r"\\$", escaped)
    return '"' + escaped + '"'


def _copy_lockfiles(files: Sequence[str]) -> list[str]:
    top = [name for name in files if "/" not in name.strip("/")]
    nested = [name for name in files if name not in top]
    lines = []
    if top:
        lines.append(_copy([*top, "./"]))
    lines += [_copy([name, f"./{name}"]) for name in nested]  # keep the directory, e.g. prisma/schema.prisma
    return lines


def _copy(paths: list[str]) -> str:
    if all(SAFE_PATH.match(path) for path in paths):
        return "COPY " + " ".join(paths)
    return "COPY " + json.dumps(paths)


def _run(command: str, *, ca_bundle: bool) -> str:
    steps = [f"export DEPS={DEPS_DIR}"]
    mount = ""
    if ca_bundle:
        mount = f"--mount=type=secret,id={CA_SECRET},target={CA_TARGET}"
        steps.append(f"ca={CA_TARGET}")  # a plain shell variable: gone when the step ends
        steps.append("export " + " ".join(f"{name}=$ca" for name in CA_VARIABLES))
    steps.append(command.strip())
    if "\n" in command.strip() or command.rstrip().endswith("\\"):
        script = " && ".join(steps)
        return " ".join(["RUN", *([mount] if mount else []), json.dumps(["/bin/sh", "-c", script])])
    if not mount:
        return "RUN " + " && ".join(steps)
    return f"RUN {mount} \\\n    " + " && \\\n    ".join(steps)


# -- detecting for an image -----------------------------------------------------------------------

COMMANDS: dict[Language, str] = {"python": "python3", "node": "node", "go": "go", "ruby": "ruby"}
# What the default bases bring when this machine has nothing to compare with (python:*-slim has pip,
# node:*-slim npm and yarn 1, golang and ruby their own tools).
BASE_TOOLS = {"npm": "10.2.4", "yarn": "1.22.19", "bundler": "2.3.26"}


class ImageToolchains:
    """This machine's toolchains as seen from inside an image: the same versions (the default base is
    chosen by the version resolved), run by their bare command on the image's PATH, not by this machine's
    paths; a runtime this machine lacks is assumed at the default base's version."""

    def __init__(self, host: Toolchains) -> None:
        self._host = host

    @property
    def platform(self) -> str:
        return self._host.platform

    def installed(self, language: Language) -> tuple[Interpreter, ...]:
        found = self._host.installed(language)
        if not found:
            pip = "23.0" if language == "python" else None
            return (Interpreter(DEFAULT_VERSIONS[language], COMMANDS[language], pip),)
        return tuple(self._bare(language, item) for item in found)

    def default(self, language: Language) -> Interpreter | None:
        found = self._host.default(language)
        return self._bare(language, found) if found is not None else next(iter(self.installed(language)), None)

    def tool_version(self, tool: str) -> str | None:
        return self._host.tool_version(tool) or BASE_TOOLS.get(tool)

    @staticmethod
    def _bare(language: Language, found: Interpreter) -> Interpreter:
        pip = (found.pip or "23.0") if language == "python" else found.pip  # official python images have venv
        return Interpreter(found.version, COMMANDS[language], pip)


# -- choosing bases and builders -------------------------------------------------------------------


def resolve_bases(
    plan: BuildPlan, *, base: str | None = None, run_base: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[str, str | None]:
    """(build base, run base or None): the option, else STACKBLAZE_BASE_IMAGE_<RUNTIME> (and
    STACKBLAZE_RUN_IMAGE_<RUNTIME>), else the runtime's default at the version detection resolved."""
    name = plan.runtime.upper()
    default_base, default_run = DEFAULT_BASES.get(plan.runtime, DEFAULT_BASES["procfile"])
    build = base or environ.get(f"STACKBLAZE_BASE_IMAGE_{name}") or default_base.format(v=_version(plan))
    run = run_base or environ.get(f"STACKBLAZE_RUN_IMAGE_{name}") or default_run
    return build, (None if run == build else run)


def _version(plan: BuildPlan) -> str:
    default = DEFAULT_VERSIONS.get(plan.runtime, "")
    found = re.match(r"\d+(?:\.\d+)*", plan.resolved_version or "")
    if not found:
        return default
    return ".".join(found.group(0).split(".")[: VERSION_PARTS.get(plan.runtime, 2)])


def find_builder(
    name: str | None = None, *, which: Callable[[str], str | None] = shutil.which,
    docker_answers: Callable[[str], bool] | None = None,
) -> str:
    """The builder to use: `name` if given, else the first of buildah, podman, docker that works."""
    answers = docker_answers or _docker_answers
    if name is not None:
        if name not in BUILDERS:
            raise UserError(f"--builder: {name!r} is not a known image builder (use buildah, podman or docker)")
        path = which(name)
        if path is None:
            raise ImageBuildError(f"image builder {name!r} not found on PATH (install it, e.g. apt-get install {name})")
        if name == "docker" and not answers(path):
            raise ImageBuildError("docker: no daemon answers (start dockerd, or use --builder buildah)")
        return path
    for candidate in BUILDERS:
        path = which(candidate)
        if path is not None and (candidate != "docker" or answers(path)):
            return path
    raise ImageBuildError("no image builder found (install buildah: apt-get install buildah)")


def _docker_answers(path: str) -> bool:
    try:
        return subprocess.run([path, "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_ca_bundle(environ: Mapping[str, str] = os.environ) -> Path | None:
    """STACKBLAZE_CA_BUNDLE (empty or "none": no bundle), else SSL_CERT_FILE, else the system bundle."""
    chosen = environ.get("STACKBLAZE_CA_BUNDLE")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "none") else Path(chosen)
    for candidate in (environ.get("SSL_CERT_FILE"), SYSTEM_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def builder_command(
    builder: str, *, containerfile: Path, context: Path, tag: str, ca_bundle: Path | None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that builds `containerfile` in `context` as `tag` (pure)."""
    kind = Path(builder).name
    command = [builder, "bud" if kind == "buildah" else "build", *extra_args]
    if kind in ("buildah", "podman"):
        command.append("--layers")
    command += ["-f", str(containerfile), "-t", tag]
    if ca_bundle is not None:
        command += ["--secret", f"id={CA_SECRET},src={ca_bundle}"]
    return [*command, str(context)]


def builder_args(builder: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """STACKBLAZE_<BUILDER>_ARGS (shell words) when set, else the builder's defaults."""
    kind = Path(builder).name
    raw = environ.get(f"STACKBLAZE_{kind.upper()}_ARGS")
    return shlex.split(DEFAULT_BUILDER_ARGS.get(kind, "") if raw is None else raw)


# -- building --------------------------------------------------------------------------------------


DEFAULT_TAG = "{project}-{service}:latest"


def image_tag(template: str | None, *, project: str, service: str) -> str:
    """The image name for one service: `{project}` and `{service}` in the template are filled in."""
    if template is None:
        return DEFAULT_TAG.format(project=project, service=service).lower()
    return template.replace("{project}", project).replace("{service}", service)


def containerfile_for(
    plan: BuildPlan, context_dir: Path, *, base: str | None = None, run_base: str | None = None,
    stop_signal: str = "SIGTERM", init: str | None = None, project: str | None = None,
    release: str | None = None, environ: Mapping[str, str] = os.environ,
) -> str:
    """The Containerfile `build_image` would build for `plan` here: bases, init and CA bundle resolved
    from the options and the environment, lockfiles that exist in `context_dir` (the plan's copy_root)."""
    build_base, final_base = resolve_bases(plan, base=base, run_base=run_base, environ=environ)
    ca_bundle = find_ca_bundle(environ)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UserError(f"STACKBLAZE_CA_BUNDLE: {str(ca_bundle)!r} is not a file (a PEM bundle, or none)")
    present = [name for name in plan.lockfiles if (context_dir / name).is_file()]
    return render_containerfile(
        plan, base=build_base, run_base=final_base, lockfiles=present, stop_signal=stop_signal,
        init=init if init is not None else environ.get("STACKBLAZE_IMAGE_INIT") or None,
        ca_bundle=ca_bundle is not None, project=project, release=release,
    )


def build_image(
    plan: BuildPlan, context_dir: Path, *, tag: str, builder: str | None = None, base: str | None = None,
    run_base: str | None = None, stop_signal: str = "SIGTERM", init: str | None = None,
    project: str | None = None, release: str | None = None, extra_args: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ, output: Callable[[str], None] = lambda _: None,
) -> ImageResult:
    """Render the Containerfile and build it from a copy of `context_dir` (the plan's `copy_root`),
    streaming the builder's output line by line to `output`."""
    path = find_builder(builder)
    containerfile = containerfile_for(plan, context_dir, base=base, run_base=run_base, stop_signal=stop_signal,
                                      init=init, project=project, release=release, environ=environ)
    ca_bundle = find_ca_bundle(environ)
    args = list(extra_args) if extra_args is not None else builder_args(path, environ)
    with tempfile.TemporaryDirectory(prefix="stackblaze-image-") as scratch:
        context = Path(scratch, "context")
        # A copy: the builder sees what a release would (no .git, no caches, no local node_modules).
        shutil.copytree(context_dir, context, symlinks=True, ignore=_ignore(context_dir, plan))
        file = Path(scratch, "Containerfile")
        file.write_text(containerfile)
        command = builder_command(path, containerfile=file, context=context, tag=tag, ca_bundle=ca_bundle,
                                  extra_args=args)
        stream_command(command, environ=environ, output=output)
    return ImageResult(plan.service, tag, Path(path).name, containerfile, tuple(command))


def _ignore(root: Path, plan: BuildPlan) -> Callable[[str, list[str]], set[str]]:
    # Linked paths (node_modules) are replaced by the layer's: copying them would only fatten a lower layer.
    links = {posixpath.normpath(path) for path in plan.links} if plan.install else set()

    def ignored(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(root).as_posix()
        return {name for name in names
                if name in IGNORED or posixpath.normpath(posixpath.join(relative, name)) in links}
    return ignored


def stream_command(command: list[str], *, environ: Mapping[str, str], output: Callable[[str], None]) -> None:
    """Run a builder command, streaming its output lines to `output`; a failure is an ImageBuildError
    naming the command, its exit code and its last line."""
    env = dict(environ)
    if Path(command[0]).name == "docker":
        env.setdefault("DOCKER_BUILDKIT", "1")  # RUN --mount needs BuildKit
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    except OSError as error:
        raise ImageBuildError(f"{command[0]}: cannot run it ({error.strerror})") from None
    assert process.stdout is not None
    with process.stdout:
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            output(line)
    code = process.wait()
    if code != 0:
        last = next((line.strip() for line in reversed(tail) if line.strip()), "no output")
        raise ImageBuildError(f"{Path(command[0]).name} {command[1]} failed (exit {code}): {last[:300]}")
