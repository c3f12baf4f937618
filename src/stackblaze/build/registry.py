"""Pushing a built image to a registry, and the one call the engines use: build a service's image, push it,
get back the reference by digest (`registry/acme-mailer@sha256:...`) that a Deployment pins.

A push goes through the builder that built the image (its storage holds it): `buildah push` or `podman
push` with `--digestfile`, or `docker push` (its digest read from its output). A failure is one line that
names the registry and says what to do, with the tool's last line.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from stackblaze.build.image import (
    ImageBuildError,
    build_image,
    builder_args,
    find_builder,
    find_ca_bundle,
    stream_command,
)
from stackblaze.build.plan import BuildPlan
from stackblaze.build.release import digest_tree
from stackblaze.errors import UserError

# The same rule as a target's `registry:` (spec/targets.py): host[:port][/path], no scheme, no tag.
REGISTRY_ADDRESS = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[a-z0-9._/-]+)?")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# buildah's and podman's options that say where the image store is: a push must look in the store the build
# wrote to, while the build's own options (--isolation, --layers...) mean nothing to `push`.
STORE_OPTIONS = {"--root", "--runroot", "--storage-driver", "--storage-opt", "--registries-conf",
                 "--registries-conf-dir", "--userns-uid-map", "--userns-gid-map"}
TAIL_LINES = 20
# What a pull asks for: a registry answers a HEAD of a manifest by digest only in a type it is asked for.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))

# What the tool's last lines mean, in order: (a fragment, lowercased, the problem and its fix).
DIAGNOSES = (
    ("server gave http response to https client",
     "it speaks plain HTTP; push with --insecure-registry (a target: insecure_registry: true)"),
    ("connection refused", "nothing answers there; start the registry, or check the address"),
    ("no such host", "the host name does not resolve; check the address"),
    ("i/o timeout", "it did not answer in time; check the address and the network"),
    ("x509", "its TLS certificate is not trusted; add its CA to the system bundle, or use --insecure-registry"),
    ("certificate", "its TLS certificate is not trusted; add its CA to the system bundle, or use --insecure-registry"),
    ("unauthorized", "it wants credentials; log in first (buildah login HOST, or REGISTRY_AUTH_FILE)"),
    ("authentication required", "it wants credentials; log in first (buildah login HOST, or REGISTRY_AUTH_FILE)"),
    ("denied", "it refused the push; check the credentials' rights on that repository"),
)


def check_registry(registry: str, *, where: str = "--push") -> str:
    """`registry` without a trailing slash, or a UserError saying what an address looks like."""
    address = registry.rstrip("/")
    if not REGISTRY_ADDRESS.fullmatch(address):
        raise UserError(f"{where}: {registry!r} is not a registry address: host[:port][/path], without https:// "
                        f"or a tag (e.g. {where} 127.0.0.1:5000/acme)")
    return address


def repository_of(reference: str) -> str:
    """`host:port/path/name:tag` without its tag (a port's colon comes before the last slash)."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    return reference[:colon] if colon > slash else reference


def push_image(
    tag: str, destination: str, *, insecure: bool = False, builder: str | None = None,
    environ: Mapping[str, str] = os.environ, output: Callable[[str], None] = lambda _: None,
) -> str:
    """Push the local image `tag` to `destination` (`host[:port]/path/name:tag`) and return it by digest:
    `host[:port]/path/name@sha256:<hex>`. `insecure` pushes over plain HTTP (buildah and podman; docker
    decides that in its daemon's `insecure-registries`, and takes 127.0.0.0/8 as insecure by itself)."""
    path = find_builder(builder)
    kind = Path(path).name
    host = destination.split("/", 1)[0]
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def seen(line: str) -> None:
        tail.append(line)
        output(line)

    with tempfile.TemporaryDirectory(prefix="stackblaze-push-") as scratch:
        digest_file = Path(scratch, "digest")
        try:
            if kind == "docker":
                if tag != destination:
                    stream_command([path, "tag", tag, destination], environ=environ, output=seen)
                stream_command([path, "push", destination], environ=environ, output=seen)
            else:
                command = [path, "push", *store_options(builder_args(path, environ)),
                           "--digestfile", str(digest_file)]
                if insecure:
                    command.append("--tls-verify=false")
                stream_command([*command, tag, f"docker://{destination}"], environ=environ, output=seen)
        except ImageBuildError:
            raise ImageBuildError(f"push to {host} failed: {diagnose(tail)} "
                                  f"({kind} push: {last_words(tail)})") from None
        found = DIGEST.search(digest_file.read_text() if digest_file.is_file() else "\n".join(tail))
    if found is None:
        raise ImageBuildError(f"push to {host}: {kind} pushed {destination} but reported no sha256 digest "
                              f"(last line: {next(reversed(tail), 'none')[:200]})")
    return f"{repository_of(destination)}@{found.group(0)}"


def registry_holds(reference: str, *, insecure: bool = False, environ: Mapping[str, str] = os.environ,
                   timeout: float = 5.0) -> bool | None:
    """Whether the registry still has `host[:port]/path/name@sha256:...` (a HEAD of its manifest, as a pull
    begins): True or False when it says so (200, 404), None when it cannot tell us (unreachable, or it wants
    credentials this process does not hold: those are the builder's)."""
    repository, _, digest = reference.partition("@")
    host, _, name = repository.partition("/")
    if not DIGEST.fullmatch(digest) or not name:
        return None
    bundle = find_ca_bundle(environ)
    url = f"{'http' if insecure else 'https'}://{host}/v2/{name}/manifests/{digest}"
    try:
        verify = ssl.create_default_context(cafile=bundle) if bundle is not None else True
        answer = httpx.head(url, headers={"Accept": MANIFEST_TYPES}, timeout=timeout, verify=verify)
    except (httpx.HTTPError, OSError):  # ssl.SSLError is an OSError: a bundle that is no bundle, too
        return None
    return True if answer.status_code == 200 else False if answer.status_code == 404 else None


def diagnose(tail: Sequence[str]) -> str:
    """What the tool's last lines say went wrong with the registry, and the fix."""
    text = "\n".join(tail).lower()
    return next((advice for fragment, advice in DIAGNOSES if fragment in text),
                "see the push's output above; is the registry up, and is the address right?")


def last_words(tail: Sequence[str], limit: int = 200) -> str:
    """The tool's last line, its end if long: Go tools chain errors as `context: ...: cause`."""
    last = next((line.strip() for line in reversed(tail) if line.strip()), "no output")
    return last if len(last) <= limit else "..." + last[-limit:]


def store_options(args: Sequence[str]) -> list[str]:
    """The image-store options among a builder's arguments, as `--name value` or `--name=value`."""
    kept: list[str] = []
    words = iter(args)
    for word in words:
        name = word.split("=", 1)[0]
        if name in STORE_OPTIONS:
            kept.append(word)
            if "=" not in word:
                kept.append(next(words, ""))
    return kept


def publish_image(
    plan: BuildPlan, context_dir: Path, *, project: str, service: str, release: int, registry: str,
    insecure: bool, stop_signal: str, base: str | None = None, builder: str | None = None,
    environ: Mapping[str, str] = os.environ, output: Callable[[str], None] = lambda _: None,
) -> str:
    """Build `service`'s image as `build --image` does, as `<registry>/<project>-<service>:r<release>`, push
    it, and return it by digest. The base comes from `base`, else STACKBLAZE_BASE_IMAGE_<RUNTIME> in `environ`,
    else the runtime's default (which must be pullable by the builder).

    The image's release label is the source's digest, not `release`: an unchanged source rebuilds to the
    same image (every layer cached), so it is pushed under the new tag with the same digest."""
    address = check_registry(registry, where="registry")
    destination = f"{address}/{project}-{service}".lower() + f":r{release}"
    result = build_image(plan, context_dir, tag=destination, builder=builder, base=base, stop_signal=stop_signal,
                         project=project, release=digest_tree(context_dir)[:12], environ=environ, output=output)
    return push_image(result.tag, destination, insecure=insecure, builder=result.builder, environ=environ,
                      output=output)
