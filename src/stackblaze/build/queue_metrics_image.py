"""The queue-metrics server's image (engine/kubernetes/queue_metrics.py runs it on a cluster): this stackblaze as a
wheel, installed with its dependencies (pinned to the versions installed here) into a venv on the base the
project's Python images use, built with the image builder and pushed by digest. A deploy publishes it once per
stackblaze build, base and registry: the reference is kept in the home's cache, not rebuilt at each deploy.

The wheel is made here from the package's files and the installed distribution's metadata (make_wheel). The
dependencies come from the package index inside the build, through the CA-bundle secret image.py mounts for any
install (a TLS-inspecting proxy).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stackblaze.build.image import (
    CA_SECRET,
    CA_TARGET,
    CA_VARIABLES,
    DEFAULT_BASES,
    SYSTEM_CA_BUNDLE,
    USER,
    ImageBuildError,
    builder_args,
    builder_command,
    find_builder,
    find_ca_bundle,
    stream_command,
)
from stackblaze.build.registry import check_registry, push_image, registry_holds
from stackblaze.build.release import digest_tree
from stackblaze.errors import UserError
from stackblaze.spec.autoscale import METRICS_API_KINDS
from stackblaze.spec.model import Project
from stackblaze.spec.targets import Target

DISTRIBUTION = "stackblaze"
IMAGE_NAME = "stackblaze-queue-metrics"
VENV = "/opt/stackblaze"
INSTALL = "/tmp/stackblaze-install"
MODULE = "stackblaze.engine.autoscale.metrics_server"
ENTRYPOINT = (f"{VENV}/bin/python", "-m", MODULE)
CACHE_FILE = "queue-metrics-images.json"
WHEEL_TIME = (1980, 1, 1, 0, 0, 0)  # zip's earliest: the same code makes the same wheel


@dataclass(frozen=True)
class Stackblaze:
    """The stackblaze to put in the image: its version, its package folder and its installed distribution."""

    version: str
    package: Path
    dist: Distribution

    @classmethod
    def installed(cls) -> Stackblaze:
        import stackblaze

        try:
            dist = distribution(DISTRIBUTION)
        except PackageNotFoundError:
            raise ImageBuildError(f"the {DISTRIBUTION} distribution is not installed (its metadata names the "
                                  f"server's dependencies): pip install -e . in the source tree") from None
        return cls(dist.version, Path(stackblaze.__file__).resolve().parent, dist)


def python_base(environ: Mapping[str, str] = os.environ) -> str:
    """The base the project's Python images use (image.resolve_bases): STACKBLAZE_BASE_IMAGE_PYTHON, else the
    official slim image of this Python's version."""
    default = DEFAULT_BASES["python"][0].format(v=f"{sys.version_info.major}.{sys.version_info.minor}")
    return environ.get("STACKBLAZE_BASE_IMAGE_PYTHON") or default


def requirements(dist: Distribution) -> list[str]:
    """The distribution's own requirements, its extras' left out. All of them: the server in a cluster also
    imports the Kubernetes client (deletion_cost.py writes pod deletion costs), 128 MB of the venv's 240."""
    found = []
    for raw in dist.requires or []:
        requirement = Requirement(raw)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(str(requirement))
    return found


def constraints(dist: Distribution) -> list[str]:
    """`name==version` of every distribution installed here that `dist` needs, directly or not: the image runs
    what this stackblaze was run (and tested) with, and an unchanged set keeps the install layer cached."""
    pinned: dict[str, str] = {}
    todo = [Requirement(r) for r in requirements(dist)]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in pinned:
            continue
        try:
            found = distribution(requirement.name)
        except PackageNotFoundError:  # not installed here (another Python's marker): the index resolves it
            continue
        pinned[name] = found.version
        for raw in found.requires or []:
            child = Requirement(raw)
            if child.marker is None or child.marker.evaluate({"extra": ""}):
                todo.append(child)
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def image_key(source: Stackblaze, base: str) -> str:
    """What makes one image: the stackblaze code (its package's files), version and dependencies, and the base."""
    digest = hashlib.sha256()
    for part in (source.version, base, digest_tree(source.package), *constraints(source.dist)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def image_tag(source: Stackblaze, base: str) -> str:
    """`<version>-<key>`: a tag per image, so a dev tree's edits at one version are separate images."""
    return f"{source.version}-{image_key(source, base)[:12]}"


def make_wheel(source: Stackblaze, out: Path) -> Path:
    """A wheel of `source` in `out`: its package folder's files and its distribution's metadata (METADATA,
    entry points), with a WHEEL and RECORD of its own. The same for an editable install (whose package is the
    source tree's) and a regular one, needs no build backend or index, and is the same bytes for the same code
    (fixed timestamps), so the builder's layer cache keeps the layer it is copied in."""
    out.mkdir(parents=True, exist_ok=True)
    info = f"{DISTRIBUTION}-{source.version}.dist-info"
    members: list[tuple[str, bytes]] = []
    for directory, dirs, files in os.walk(source.package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = Path(directory, name)
            if name.endswith((".pyc", ".pyo")):
                continue
            members.append((path.relative_to(source.package.parent).as_posix(), path.read_bytes()))
    metadata = source.dist.read_text("METADATA")
    if metadata is None:
        raise ImageBuildError(f"{DISTRIBUTION} {source.version}: its installed metadata has no METADATA file "
                              f"(reinstall it: pip install -e . in the source tree)")
    members.append((f"{info}/METADATA", metadata.encode()))
    entry_points = source.dist.read_text("entry_points.txt")
    if entry_points:
        members.append((f"{info}/entry_points.txt", entry_points.encode()))
    members.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: stackblaze\nRoot-Is-Purelib: true\n"
                                     b"Tag: py3-none-any\n"))
    records = [f"{name},sha256={_urlsafe_digest(data)},{len(data)}" for name, data in members]
    members.append((f"{info}/RECORD", ("\n".join([*records, f"{info}/RECORD,,"]) + "\n").encode()))
    wheel = out / f"{DISTRIBUTION}-{source.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            entry = zipfile.ZipInfo(name, date_time=WHEEL_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return wheel


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def render_containerfile(*, base: str, wheel: str, version: str, ca_bundle: bool) -> str:
    """The Containerfile over a context holding requirements.txt, constraints.txt and `wheel`: the dependencies in
    a layer of their own (a stackblaze edit reuses it), then the wheel without dependencies."""
    mount, ca = "", ""
    if ca_bundle:
        mount = f"--mount=type=secret,id={CA_SECRET},target={CA_TARGET} "
        ca = f"ca={CA_TARGET} && export " + " ".join(f"{name}=$ca" for name in CA_VARIABLES) + " && "
    pip = f"{VENV}/bin/pip install --no-cache-dir --disable-pip-version-check"
    lines = [f"# the stackblaze queue-metrics server {version}, rendered by stackblaze"]
    if ca_bundle:
        lines.append(f"# build with the CA bundle as a secret: --secret id={CA_SECRET},src={SYSTEM_CA_BUNDLE}")
    lines += [
        f"FROM {base}",
        f"COPY requirements.txt constraints.txt {INSTALL}/",
        f"RUN {mount}{ca}python3 -m venv {VENV} && "
        f"{pip} -r {INSTALL}/requirements.txt -c {INSTALL}/constraints.txt",
        f"COPY {wheel} {INSTALL}/",
        f"RUN {pip} --no-deps {INSTALL}/{wheel} && rm -rf {INSTALL}",
        f"ENV PATH={VENV}/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        f'LABEL dev.stackblaze.component="queue-metrics" dev.stackblaze.version="{version}"',
        f"USER {USER}",
        "EXPOSE 8080",
        f"ENTRYPOINT {json.dumps(list(ENTRYPOINT))}",
    ]
    return "\n".join(lines) + "\n"


def build_queue_metrics_image(
    tag: str, *, base: str | None = None, builder: str | None = None, source: Stackblaze | None = None,
    environ: Mapping[str, str] = os.environ, output: Callable[[str], None] = lambda _: None,
) -> str:
    """Build the image as `tag` with the builder (buildah, podman or docker); returns the builder's name."""
    path = find_builder(builder)
    source = source or Stackblaze.installed()
    base = base or python_base(environ)
    ca_bundle = find_ca_bundle(environ)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UserError(f"STACKBLAZE_CA_BUNDLE: {str(ca_bundle)!r} is not a file (a PEM bundle, or none)")
    with tempfile.TemporaryDirectory(prefix="stackblaze-queue-metrics-") as scratch:
        context = Path(scratch, "context")
        wheel = make_wheel(source, context)
        (context / "requirements.txt").write_text("\n".join(requirements(source.dist)) + "\n")
        (context / "constraints.txt").write_text("\n".join(constraints(source.dist)) + "\n")
        file = Path(scratch, "Containerfile")
        file.write_text(render_containerfile(base=base, wheel=wheel.name, version=source.version,
                                             ca_bundle=ca_bundle is not None))
        output(f"queue-metrics: building {tag} from {DISTRIBUTION} {source.version} on {base}")
        stream_command(builder_command(path, containerfile=file, context=context, tag=tag, ca_bundle=ca_bundle,
                                       extra_args=builder_args(path, environ)), environ=environ, output=output)
    return Path(path).name


def publish_queue_metrics_image(
    registry: str, *, insecure: bool = False, base: str | None = None, builder: str | None = None,
    cache: Path | None = None, environ: Mapping[str, str] = os.environ,
    output: Callable[[str], None] = lambda _: None, where: str = "registry",
) -> str:
    """`<registry>/stackblaze-queue-metrics@sha256:...`: built and pushed, or the reference this cache folder
    holds for this registry, stackblaze and base while the registry still has it (then nothing is built).
    `where` names the registry's field in an error (a target's `registry`, the CLI's `--registry`)."""
    address = check_registry(registry, where=where)
    source = Stackblaze.installed()
    base = base or python_base(environ)
    destination = f"{address}/{IMAGE_NAME}:{image_tag(source, base)}"
    known = _read_cache(cache).get(destination)
    if known is not None:
        # the registry may have lost it (garbage-collected, wiped, a new one at the same address): a pod would
        # then fail to pull it, so ask; a registry that cannot say (unreachable, credentials) keeps the cache's
        if registry_holds(known, insecure=insecure, environ=environ) is not False:
            return known
        output(f"queue-metrics: {known} is no longer in {address}; building it again")
    used = build_queue_metrics_image(destination, base=base, builder=builder, source=source, environ=environ,
                                     output=output)
    reference = push_image(destination, destination, insecure=insecure, builder=used, environ=environ, output=output)
    if cache is not None:
        _write_cache(cache, {**_read_cache(cache), destination: reference})
    return reference


def publish_for(project: Project, target: Target, *, cache: Path, environ: Mapping[str, str] = os.environ,
                output: Callable[[str], None] = lambda _: None) -> str | None:
    """What a deploy of `project` to `target` runs the server from: None when no worker's queues need it or the
    target has no registry (a fake cluster: the Deployment keeps the name, nothing pulls it)."""
    if target.registry is None or not any(s.autoscale is not None and s.autoscale.queues.kind in METRICS_API_KINDS
                                          for s in project.services):
        return None
    return publish_queue_metrics_image(target.registry, insecure=target.insecure_registry, cache=cache,
                                       environ=environ, output=output)


def _read_cache(cache: Path | None) -> dict[str, str]:
    if cache is None:
        return {}
    try:
        found = json.loads((cache / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or torn: building again is only slower
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _write_cache(cache: Path, known: dict[str, str]) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    fresh = cache / f".{CACHE_FILE}.{os.getpid()}"
    fresh.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
    fresh.replace(cache / CACHE_FILE)  # whole or not at all: a deploy beside this one reads either


def how_to_publish(image: str) -> str:
    """The note for `render k8s`, whose queue-metrics Deployment names an image no registry holds yet."""
    return (f"queue-metrics: {image} is a name, not a pushed image: build and push it with `stackblaze "
            f"queue-metrics image --registry HOST[:PORT]/PATH`, then set the Deployment's image to the reference it "
            f"prints (a deploy to a target with a registry does both itself)")
