"""A deploy to a cluster target with an rq-autoscaled worker publishes the queue-metrics server's image to the
target's registry once per stackblaze build (a later deploy reuses it from the home's cache, builds nothing, unless
the registry lost it: then it is built and pushed again) and
says the reference by digest that the server's Deployment pins (engine/kubernetes/autoscaling.py puts the
Desired's reference in the Deployment: tests/unit/engine/kubernetes/test_keda.py).

Real registry, real buildah, real pip inside the build; bases made here (busybox for the worker's Procfile image,
the debootstrap Python base of tests/python_base.py for the server's). The cluster is the fake one: nothing pulls.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.conftest import Stackblaze, write_project
from tests.integration.test_image import BASE as BUSYBOX
from tests.integration.test_image import Buildah
from tests.integration.test_registry_push import store  # noqa: F401 (a fixture)
from tests.python_base import BASE as PYTHON
from tests.python_base import python_base_tarball
from tests.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# The deploy's progress, as the CLI prints it: "queue-metrics image <reference>" ("|" is the daemon's separator)
IMAGE = re.compile(r"^queue-metrics (?:\| )?image (?P<reference>\S+@sha256:[0-9a-f]{64})$", re.M)
BUILDING = "queue-metrics: building"


def test_a_target_deploy_publishes_the_queue_metrics_image_once(
    sb: Stackblaze, store: Buildah, registry: Registry, tmp_path: Path,  # noqa: F811
) -> None:
    container = store("from", "scratch")
    store("add", container, str(python_base_tarball()), "/")
    store("config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container)
    store("commit", "--quiet", container, PYTHON)
    store("rm", container)
    sb.env.update({"STACKBLAZE_BUILDAH_ARGS": " ".join([*store.flags, "--isolation", "chroot"]),
                   "STACKBLAZE_BASE_IMAGE_PROCFILE": BUSYBOX, "STACKBLAZE_BASE_IMAGE_PYTHON": PYTHON})
    sb.env.pop("STACKBLAZE_CA_BUNDLE", None)  # pip inside the build reaches the index through this machine's CA
    project = write_project(tmp_path / "shop", f"""
project: shop
services:
  - name: worker
    start: ./worker.sh
    autoscale:
      max: 4
      latency_slo: 30s
      queues: {{kind: rq, url: "redis://redis.example:6379/0", names: [default]}}
targets:
  sim: {{kind: fake, registry: "{registry.address}/acme", insecure_registry: true}}
""", {"worker.sh": "#!/bin/sh\nexec sleep 1000000\n"})
    (project / "worker.sh").chmod(0o755)

    first = sb.run("deploy", str(project), "--target", "sim", timeout=480)
    said = first.err + first.out
    found = IMAGE.search(said)
    assert found is not None, said[-3000:]
    reference = found["reference"]
    repository, digest = reference.split("@")
    assert repository.startswith(f"{registry.address}/acme/stackblaze-queue-metrics")
    assert registry.manifest("acme/stackblaze-queue-metrics", digest)[0] == digest
    assert BUILDING in said  # built by this deploy, its output streamed
    # an rq worker's latency_slo reaches KEDA through the server's `latency` ratio: nothing to note (on rabbitmq and
    # nats a note says it has no effect: test_render_cli.py, test_keda.py)
    assert "latency_slo" not in said

    # A new release of the worker: the server's image is the cached one, nothing is built or pushed again.
    (project / "worker.sh").write_text("#!/bin/sh\necho v2\nexec sleep 1000000\n")
    second = sb.run("deploy", str(project), "--target", "sim", timeout=480)
    again = second.err + second.out
    found_again = IMAGE.search(again)
    assert found_again is not None and found_again["reference"] == reference, again[-3000:]
    assert BUILDING not in again

    # The registry loses it (a clean-up deleted the manifest): the next deploy sees that, builds it again (from
    # the builder's cache) and pushes it, so the server's pod can pull what its Deployment pins.
    registry.delete_manifest("acme/stackblaze-queue-metrics", digest)
    third = sb.run("deploy", str(project), "--target", "sim", timeout=480)
    lost = third.err + third.out
    assert f"{reference} is no longer in {registry.address}/acme; building it again" in lost, lost[-3000:]
    assert BUILDING in lost
    found_third = IMAGE.search(lost)
    assert found_third is not None, lost[-3000:]
    pushed = found_third["reference"].split("@")[1]
    assert registry.manifest("acme/stackblaze-queue-metrics", pushed)[0] == pushed
