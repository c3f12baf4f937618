"""A deploy to a cluster target builds each new release's image, pushes it to the target's registry, and the
Deployment references it by digest.

The registry is real (Debian's docker-registry on 127.0.0.1) and so is the image (buildah on a static-busybox
base made here, as in test_registry_push.py). The cluster is the fake one (`kind: fake`): no kubelet can run
here, so nothing pulls the image; what the test reads is the pods' image as the Deployment's template gave it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.integration.test_image import BASE, Buildah
from tests.integration.test_registry_push import builder_env, store  # noqa: F401 (a fixture)
from tests.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PUSHED = re.compile(r"pushed (?P<repository>\S+)@(?P<digest>sha256:[0-9a-f]{64})")


def test_a_target_deploy_pushes_each_release_and_pins_its_digest(
    sb: Stackblaze, store: Buildah, registry: Registry, tmp_path: Path,  # noqa: F811
) -> None:
    env = builder_env(store, tmp_path)
    sb.env.update({key: env[key] for key in ("STACKBLAZE_CA_BUNDLE", "STACKBLAZE_BUILDAH_ARGS")})
    sb.env["STACKBLAZE_BASE_IMAGE_PROCFILE"] = BASE
    project = write_project(tmp_path / "shop", f"""
project: shop
services:
  - name: worker
    start: ./worker.sh emails
targets:
  sim: {{kind: fake, registry: "{registry.address}/acme", insecure_registry: true}}
""", {"worker.sh": "#!/bin/sh\necho working on \"$1\"\nexec sleep 1000000\n"})
    (project / "worker.sh").chmod(0o755)

    first = sb.run("deploy", str(project), "--target", "sim", timeout=240)
    pushed = PUSHED.search(first.err + first.out)
    assert pushed is not None, first.err
    assert pushed["repository"] == f"{registry.address}/acme/shop-worker"
    served, _ = registry.manifest("acme/shop-worker", pushed["digest"])
    assert served == pushed["digest"]
    assert "r1" in registry.tags("acme/shop-worker")
    image = f"{pushed['repository']}@{pushed['digest']}"
    replicas = wait_for("the pod running", lambda: (r := sb.run("ps", "--target", "sim", "--json").json()[
        "services"][0]["replicas"]) and r[0]["state"] == "running" and r)
    assert replicas[0]["image"] == image  # by digest: what was pushed is what runs

    # An unchanged source is the same release: nothing is pushed again. An edit is release 2, a new image.
    again = sb.run("deploy", str(project), "--target", "sim", timeout=240)
    assert PUSHED.search(again.err + again.out) is None
    (project / "worker.sh").write_text("#!/bin/sh\necho working harder on \"$1\"\nexec sleep 1000000\n")
    second = sb.run("deploy", str(project), "--target", "sim", timeout=240)
    newer = PUSHED.search(second.err + second.out)
    assert newer is not None and newer["digest"] != pushed["digest"]
    assert {"r1", "r2"} <= set(registry.tags("acme/shop-worker"))
    wait_for("the pod of release 2", lambda: [
        (r["release"], r["image"]) for r in sb.run("ps", "--target", "sim", "--json").json()["services"][0][
            "replicas"] if r["state"] == "running"] == [(2, f"{newer['repository']}@{newer['digest']}")])
