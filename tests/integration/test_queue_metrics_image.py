"""The queue-metrics server's image (build/queue_metrics_image.py), built for real and run: buildah builds it on a
Debian Python base made here (tests/python_base.py; no registry is reachable to pull python:3.11-slim), pip
installs its dependencies from the package index inside the build (through the CA bundle), it is pushed to a real
registry (Debian's docker-registry on 127.0.0.1) and pulled back by digest; its manifest's config is the server's
entrypoint and user, and the pulled image's rootfs, run with chroot as that user against a real redis-server,
serves the work of jobs enqueued by the real RQ. A second publish with the same cache builds nothing.

Slow: a cold build is about 75 s (the dependency install is most of it), so the whole test takes 2-3 minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import Queue

from stackblaze.build.queue_metrics_image import ENTRYPOINT, IMAGE_NAME, publish_queue_metrics_image
from stackblaze.engine.autoscale.metrics_server import CONFIG_ENV
from tests.integration.autoscale_readers.brokers import redis_server, stop
from tests.integration.conftest import free_port, wait_for
from tests.integration.test_image import Buildah
from tests.python_base import BASE, python_base_tarball
from tests.registry import Registry
from tests.tools import need

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REFERENCE = re.compile(r"(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Buildah]:
    """A private buildah storage holding the Python base."""
    need("buildah")
    tool = Buildah(tmp_path / "buildah")
    tarball = python_base_tarball()
    try:
        container = tool("from", "scratch")
        tool("add", container, str(tarball), "/")
        tool("config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", container)
        tool("commit", "--quiet", container, BASE)
        tool("rm", container)
        yield tool
    finally:
        subprocess.run(["buildah", *tool.flags, "umount", "--all"], capture_output=True, timeout=60)
        subprocess.run(["buildah", *tool.flags, "rm", "--all"], capture_output=True, timeout=60)
        shutil.rmtree(tool.root, ignore_errors=True)


def test_the_image_is_pushed_by_digest_and_serves_the_work_of_rq_jobs(
    store: Buildah, registry: Registry, tmp_path: Path,
) -> None:
    env = {**os.environ, "STACKBLAZE_BUILDAH_ARGS": " ".join([*store.flags, "--isolation", "chroot"])}
    env.pop("STACKBLAZE_CA_BUNDLE", None)  # the system bundle: pip reaches the index through this machine's proxy
    cache = tmp_path / "cache"
    lines: list[str] = []
    began = time.monotonic()
    reference = publish_queue_metrics_image(f"{registry.address}/acme", insecure=True, base=BASE, builder="buildah",
                                            cache=cache, environ=env, output=lines.append)
    cold = time.monotonic() - began
    print(f"\nqueue-metrics image: built and pushed in {cold:.1f}s")
    found = REFERENCE.fullmatch(reference)
    assert found, reference
    assert found["repository"] == f"{registry.address}/acme/{IMAGE_NAME}"
    assert any("Successfully installed" in line and "fastapi" in line for line in lines)  # pip, in the build

    # The registry serves that digest; its config is the server's entrypoint, as an unprivileged user.
    served, manifest = registry.manifest(f"acme/{IMAGE_NAME}", found["digest"])
    assert served == found["digest"]
    config = registry.get(f"/v2/acme/{IMAGE_NAME}/blobs/{manifest['config']['digest']}")[1]["config"]
    assert config["Entrypoint"] == list(ENTRYPOINT) == [
        "/opt/stackblaze/bin/python", "-m", "stackblaze.engine.autoscale.metrics_server"]
    assert not config.get("Cmd") and config["User"] == "10001:10001"
    assert "PATH=/opt/stackblaze/bin:/usr/local/bin:/usr/bin:/bin" in config["Env"]
    layers = sum(layer["size"] for layer in manifest["layers"])
    print(f"queue-metrics image: {layers / 1e6:.0f} MB compressed ({len(manifest['layers'])} layers)")

    # Published once per stackblaze build and registry: the same reference again, nothing built.
    again: list[str] = []
    assert publish_queue_metrics_image(f"{registry.address}/acme", insecure=True, base=BASE, builder="buildah",
                                       cache=cache, environ=env, output=again.append) == reference
    assert again == []

    # Pulled back by digest, as a kubelet would, and run with chroot as the image's user.
    container = store("from", "--tls-verify=false", "--pull-always", reference)
    rootfs = Path(store("mount", container))
    with redis_server(tmp_path / "redis", "qm-s3cret") as broker:
        (rootfs / "tmp" / "queues.json").write_text(json.dumps({"services": {
            "mails": {"kind": "rq", "url": broker.url, "names": ["default"], "poll": 0.5}}}))
        jobs = Queue("default", connection=redis.Redis(port=broker.port, password="qm-s3cret"))
        for _ in range(3):
            jobs.enqueue("tasks.send")
        port = free_port()
        log = tmp_path / "server.log"
        command = ["chroot", "--userspec=10001:10001", str(rootfs), "/usr/bin/env", "-i",
                   "PATH=/opt/stackblaze/bin:/usr/bin:/bin", f"{CONFIG_ENV}=/tmp/queues.json",
                   "STACKBLAZE_QUEUE_METRICS_HOST=127.0.0.1", f"STACKBLAZE_QUEUE_METRICS_PORT={port}",
                   *config["Entrypoint"]]
        with log.open("wb") as out:
            server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            def answer() -> dict[str, Any] | None:
                assert server.poll() is None, log.read_text()
                try:
                    body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/metrics/mails", timeout=2).json()
                except httpx.HTTPError:
                    return None
                return body if body.get("samples") == 10 and body.get("work") == 3 else None

            body = wait_for("the image's server to serve 3 jobs", answer, timeout=60, interval=0.2)
            assert (body["ready"], body["due"], body["in_flight"], body["waiting"]) == (3, 0, 0, 3)
            Queue("default", connection=redis.Redis(port=broker.port, password="qm-s3cret")).enqueue("tasks.send")
            wait_for("4 jobs", lambda: httpx.get(f"http://127.0.0.1:{port}/metrics/mails", timeout=2).json()[
                "work"] == 4, timeout=10, interval=0.1)
        finally:
            stop(server)
    assert "cannot read" not in log.read_text()
