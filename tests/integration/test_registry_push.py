"""Pushing a built image to a real registry (Debian's docker-registry on 127.0.0.1, plain HTTP) and getting
it back by digest: what we print is checked against what the registry itself serves over its HTTP API.

The image is test_image.py's kind: buildah on a static-busybox base made here (no registry is reachable to
pull a base from), each test with its own buildah storage.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackblaze.build.plan import BuildPlan
from stackblaze.build.registry import publish_image
from tests.integration.test_image import BASE, Buildah, busybox_buildah
from tests.registry import Registry, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REFERENCE = re.compile(r"(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Buildah]:
    """A private buildah storage holding the busybox base."""
    yield from busybox_buildah(tmp_path)


def builder_env(store: Buildah, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home"), "STACKBLAZE_CA_BUNDLE": "none",
            "STACKBLAZE_BUILDAH_ARGS": " ".join([*store.flags, "--isolation", "chroot"])}


def write_shop(root: Path) -> Path:
    root.mkdir()
    (root / "Procfile").write_text("worker: ./worker.sh emails\n")
    (root / "worker.sh").write_text("#!/bin/sh\necho working on \"$1\"\n")
    (root / "worker.sh").chmod(0o755)
    return root


def push(app: Path, env: dict[str, str], registry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackblaze.cli", "build", str(app), "--image", "--builder", "buildah", "--base", BASE,
         "--push", registry, *args], capture_output=True, text=True, env=env, timeout=240)


def test_the_cli_pushes_and_prints_the_digest_the_registry_serves(
    store: Buildah, registry: Registry, tmp_path: Path,
) -> None:
    app = write_shop(tmp_path / "shop")
    env = builder_env(store, tmp_path)

    first = push(app, env, f"{registry.address}/acme", "--insecure-registry", "--json")
    assert first.returncode == 0, first.stderr
    [image] = json.loads(first.stdout)["images"]
    assert image["tag"] == f"{registry.address}/acme/shop-worker:latest"
    found = REFERENCE.fullmatch(image["pushed"])
    assert found, image
    assert found["repository"] == f"{registry.address}/acme/shop-worker"
    assert image["digest"] == found["digest"]
    assert "Writing manifest to image destination" in first.stderr  # buildah's own output, streamed

    # The registry serves that manifest under that digest, and the tag points at it.
    served, manifest = registry.manifest("acme/shop-worker", found["digest"])
    assert served == found["digest"]
    assert registry.manifest("acme/shop-worker", "latest")[0] == found["digest"]
    assert registry.tags("acme/shop-worker") == ["latest"]
    # ... and it is our image: its config blob holds the worker's command and user.
    config = registry.get(f"/v2/acme/shop-worker/blobs/{manifest['config']['digest']}")[1]["config"]
    assert config["Cmd"] == ["./worker.sh", "emails"]
    assert config["User"] == "10001:10001"

    # An unchanged source rebuilds from the layer cache to the same image: the same digest is pushed.
    again = push(app, env, f"{registry.address}/acme", "--insecure-registry")
    assert again.returncode == 0, again.stderr
    assert f"worker: pushed {image['pushed']}" in again.stdout.splitlines()

    # A changed source is a new image under the same tag.
    (app / "worker.sh").write_text("#!/bin/sh\necho edited\n")
    edited = push(app, env, f"{registry.address}/acme", "--insecure-registry", "--json")
    assert edited.returncode == 0, edited.stderr
    digest = json.loads(edited.stdout)["images"][0]["digest"]
    assert digest != found["digest"]
    assert registry.manifest("acme/shop-worker", "latest")[0] == digest


def test_publish_builds_a_release_tag_and_returns_the_reference_by_digest(
    store: Buildah, registry: Registry, tmp_path: Path,
) -> None:
    """What the daemon calls for a Kubernetes deploy: `<registry>/<project>-<service>:r<release>`, by digest."""
    app = write_shop(tmp_path / "app")
    plan = BuildPlan(service="worker", root=".", runtime="procfile", version=None, version_source=None,
                     resolved_version=None, package_manager=None, tool_version=None, install=None, build=None,
                     start="./worker.sh emails", lockfiles=())
    lines: list[str] = []
    publish = functools.partial(
        publish_image, plan, app, project="Acme", service="worker", registry=f"{registry.address}/team",
        insecure=True, stop_signal="SIGQUIT", base=BASE, builder="buildah", environ=builder_env(store, tmp_path),
        output=lines.append)
    third = publish(release=3)
    found = REFERENCE.fullmatch(third)
    assert found and found["repository"] == f"{registry.address}/team/acme-worker", third
    assert registry.manifest("team/acme-worker", "r3")[0] == found["digest"]
    assert any(line.startswith("COMMIT") for line in lines) and "Storing signatures" in lines

    fourth = publish(release=4)
    assert fourth == third  # same source, same image: a new tag, not a new digest
    assert sorted(registry.tags("team/acme-worker")) == ["r3", "r4"]
    manifest = registry.manifest("team/acme-worker", "r4")[1]
    config = registry.get(f"/v2/team/acme-worker/blobs/{manifest['config']['digest']}")[1]["config"]
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Labels"]["dev.stackblaze.project"] == "Acme"


def test_a_registry_that_is_down_or_speaks_http_gives_one_line_and_exit_1(
    store: Buildah, registry: Registry, tmp_path: Path,
) -> None:
    app = write_shop(tmp_path / "shop")
    env = builder_env(store, tmp_path)
    down = f"127.0.0.1:{free_port()}"  # nothing listens there

    refused = push(app, env, f"{down}/acme", "--insecure-registry")
    assert refused.returncode == 1, refused.stderr
    assert "worker: built" in refused.stdout  # the build itself succeeded
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: push to {down} failed: nothing answers there; start the registry"), error
    assert "connection refused" in error and "Traceback" not in refused.stderr

    plain = push(app, env, f"{registry.address}/acme")  # a plain-HTTP registry, pushed to without the flag
    assert plain.returncode == 1
    error = plain.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: push to {registry.address} failed: it speaks plain HTTP; push with "
                            f"--insecure-registry"), error


def test_push_goes_with_image_and_a_registry_address(tmp_path: Path) -> None:
    app = write_shop(tmp_path / "shop")
    env = {**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stackblaze.cli", "build", str(app), *args],
                              capture_output=True, text=True, env=env, timeout=60)

    alone = cli("--plan", "--push", "127.0.0.1:5000/acme")
    assert alone.returncode == 2 and "go with --image" in alone.stderr
    scheme = cli("--image", "--push", "https://registry.example.com/acme")
    assert scheme.returncode == 2
    assert "'https://registry.example.com/acme' is not a registry address" in scheme.stderr
    flag = cli("--image", "--insecure-registry")
    assert flag.returncode == 2 and "goes with --push REGISTRY" in flag.stderr
