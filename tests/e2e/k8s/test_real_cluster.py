"""The Kubernetes engine on a real cluster: deploy, ps, scale, logs, restart and destroy through the CLI.

Runs only when KUBECONFIG is set (there is no cluster on CI machines: the fake-cluster half of
tests/integration/test_targets_cli.py and the kmock wire tests cover the engine there). Needs a registry the
cluster can pull from, in STACKBLAZE_E2E_REGISTRY (e.g. `localhost:5001` with kind's local-registry recipe,
or k3d's `k3d-registry.localhost:5000`), STACKBLAZE_E2E_INSECURE=1 when it speaks plain HTTP, and an image
base in STACKBLAZE_BASE_IMAGE_PYTHON when the default (python:3.11-slim) cannot be pulled.
The README ("Kubernetes") says how to run it with kind, k3d or any cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stackblaze, wait_for, write_project

pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG") or not os.environ.get("STACKBLAZE_E2E_REGISTRY"),
    reason="no real cluster: set KUBECONFIG and STACKBLAZE_E2E_REGISTRY to run (README: Kubernetes)")

WORKER = "import os, time\nprint('job done by', os.environ['HOSTNAME'], flush=True)\ntime.sleep(1e6)\n"


@pytest.fixture
def cluster(sb: Stackblaze, tmp_path: Path) -> Iterator[tuple[Stackblaze, Path, str]]:
    namespace = f"sb-e2e-{uuid.uuid4().hex[:8]}"
    insecure = "\n    insecure_registry: true" if os.environ.get("STACKBLAZE_E2E_INSECURE") else ""
    context = os.environ.get("STACKBLAZE_E2E_CONTEXT")
    project = write_project(tmp_path / "shop", f"""
project: shop
services:
  - name: worker
    start: python3 worker.py
    replicas: 2
    min_ready: 2s
targets:
  e2e:
    kind: kubernetes
    namespace: {namespace}
    registry: {os.environ["STACKBLAZE_E2E_REGISTRY"]}{insecure}
{f"    context: {context}" if context else ""}
""", {"worker.py": WORKER})
    sb.env["STACKBLAZE_TARGET"] = "e2e"
    for key, value in os.environ.items():  # the daemon builds the images: it needs the base and the cluster
        if key == "KUBECONFIG" or key.startswith("STACKBLAZE_BASE_IMAGE_"):
            sb.env[key] = value
    try:
        yield sb, project, namespace
    finally:
        sb.run("destroy", "--yes", check=False, timeout=300)


def running(sb: Stackblaze) -> list[dict[str, Any]]:
    return [r for r in sb.replicas("worker") if r["state"] == "running"]


def test_deploy_scale_logs_restart_on_a_real_cluster(cluster: tuple[Stackblaze, Path, str]) -> None:
    sb, project, _ = cluster
    deployed = sb.run("deploy", str(project), timeout=900)
    assert "@sha256:" in deployed.err + deployed.out  # the pushed image, referenced by digest
    wait_for("2 pods running", lambda: len(running(sb)) == 2, timeout=300, interval=1)
    sb.run("scale", "worker", "--replicas", "3")
    wait_for("3 pods running", lambda: len(running(sb)) == 3, timeout=300, interval=1)
    logs = wait_for("a line from each pod", lambda: len(
        {line for line in sb.run("logs", "worker").out.splitlines() if "job done by" in line}) >= 3, timeout=120,
        interval=1)
    assert logs
    old = {r["pod"] for r in running(sb)}
    sb.run("restart", "worker")
    wait_for("3 new pods", lambda: len(r := running(sb)) == 3 and not old & {x["pod"] for x in r},
             timeout=300, interval=1)
    assert any(e["kind"] == "scale" for e in sb.events("worker"))
