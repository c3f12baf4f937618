"""The whole stack against the real control plane: the real CLI and daemon (tests/integration's `sb`), images
built by buildah and pushed to a real registry (test_registry_push.py's `store`, tests/registry.py), and the
Kubernetes engine talking to the real API server of conftest.py's `control_plane`.

`cluster` is the fixture: a project writer whose target `cp` points at the test's namespace, and API clients
to read what the engine did.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.integration.conftest import Result, Stackblaze, wait_for, write_project
from tests.integration.test_image import BASE, Buildah
from tests.integration.test_registry_push import builder_env
from tests.k8s.controlplane import ControlPlane
from tests.registry import Registry

TARGET = "cp"
APPLY = "application/apply-patch+yaml"
WORKER = "#!/bin/sh\necho working on \"$1\"\nexec sleep 1000000\n"
# The engine looks at a real cluster every 2 s; a deploy waits for its rollout (min_ready 0s keeps that short).
SETTLE = 60.0
# One worker of 2 replicas, available at once (kwok's pods are Running as soon as they are scheduled).
WORKER_SPEC = """
project: shop
services:
  - name: worker
    start: ./worker.sh emails
    replicas: 2
    min_ready: 0s
"""


@dataclass
class Cluster:
    sb: Stackblaze
    plane: ControlPlane
    namespace: str
    registry: Registry
    root: Path
    apps: Any  # kubernetes.client.AppsV1Api
    core: Any  # kubernetes.client.CoreV1Api

    def target(self) -> str:
        return (f"targets:\n  {TARGET}: {{kind: kubernetes, context: {self.plane.context}, "
                f"namespace: {self.namespace}, registry: \"{self.registry.address}/acme\", insecure_registry: true}}\n")

    def write(self, spec: str, worker: str = WORKER) -> Path:
        """The project `shop` with this spec (its services' part; the target is added) and a busybox worker."""
        project = write_project(self.root, textwrap.dedent(spec).lstrip() + self.target(), {"worker.sh": worker})
        (project / "worker.sh").chmod(0o755)
        return project

    def deploy(self, project: Path, *, check: bool = True) -> Result:
        return self.sb.run("deploy", str(project), "--target", TARGET, timeout=240, check=check)

    def ps(self) -> dict[str, Any]:
        return self.sb.run("ps", "--target", TARGET, "--json").json()  # type: ignore[no-any-return]

    def replicas(self, service: str) -> list[dict[str, Any]]:
        for entry in self.ps()["services"]:
            if entry["service"] == service:
                return entry["replicas"]  # type: ignore[no-any-return]
        return []

    # -- what the API server holds -----------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        listing: Any = {
            "Deployment": self.apps.list_namespaced_deployment, "ReplicaSet": self.apps.list_namespaced_replica_set,
            "Secret": self.core.list_namespaced_secret, "Service": self.core.list_namespaced_service,
            "Pod": self.core.list_namespaced_pod,
        }[kind]
        return sorted(item.metadata.name for item in listing(self.namespace).items)

    def ingresses(self) -> list[str]:
        networking: Any = kubernetes.client.NetworkingV1Api(self.apps.api_client)
        return sorted(item.metadata.name for item in networking.list_namespaced_ingress(self.namespace).items)

    def deployment(self, name: str) -> dict[str, Any]:
        """The Deployment as the API's JSON (camelCase, managedFields included)."""
        model = self.apps.read_namespaced_deployment(name, self.namespace)
        shaped: dict[str, Any] = self.apps.api_client.sanitize_for_serialization(model)
        return shaped

    def replica_sets(self, instance: str) -> list[Any]:
        return list(self.apps.list_namespaced_replica_set(
            self.namespace, label_selector=f"app.kubernetes.io/instance={instance}").items)

    def pods(self, instance: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/instance={instance}").items)

    def running_pods(self, instance: str, count: int) -> list[Any]:
        """Wait for exactly `count` pods of the instance, each Running on a kwok node and none deleted."""
        def check() -> list[Any]:
            pods = self.pods(instance)
            ok = len(pods) == count and all(p.status.phase == "Running" and not p.metadata.deletion_timestamp
                                            for p in pods)
            return pods if ok else []

        return wait_for(f"{count} Running pods of {instance} in {self.namespace}", check,  # type: ignore[no-any-return]
                        timeout=SETTLE, interval=0.2)

    def scale_as_kubectl(self, name: str, replicas: int) -> Any:
        """What `kubectl scale deployment NAME --replicas N` sends: a merge PATCH of /scale, manager kubectl."""
        return self.apps.patch_namespaced_deployment_scale(
            name, self.namespace, {"spec": {"replicas": replicas}}, field_manager="kubectl",
            _content_type="application/merge-patch+json")


def managers(deployment: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """managedFields by (manager, operation, subresource) -> the fieldsV1 it owns."""
    return {(entry["manager"], entry["operation"], entry.get("subresource", "")): entry.get("fieldsV1", {})
            for entry in deployment["metadata"].get("managedFields") or []}


def pushed_image(result: Result, service: str) -> str | None:
    """The `repo@sha256:` reference the deploy printed for the service's image (None: nothing pushed)."""
    found = re.search(rf"pushed (\S+/acme/shop-{service}@sha256:[0-9a-f]{{64}})", result.err + result.out)
    return found[1] if found else None


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str, sb: Stackblaze, store: Buildah, registry: Registry,
            tmp_path: Path) -> Iterator[Cluster]:
    """The CLI and its daemon pointed at the control plane (KUBECONFIG in the daemon's env), building with
    buildah on a busybox base and pushing to the test's registry. The control plane first: without its
    binaries the test skips (off CI) before anything is built."""
    env = builder_env(store, tmp_path)
    sb.env.update({key: env[key] for key in ("STACKBLAZE_CA_BUNDLE", "STACKBLAZE_BUILDAH_ARGS")})
    sb.env["STACKBLAZE_BASE_IMAGE_PROCFILE"] = BASE
    sb.env["KUBECONFIG"] = str(control_plane.kubeconfig)
    api = control_plane.api_client()
    yield Cluster(sb, control_plane, namespace, registry, tmp_path / "shop",
                  kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api))
    api.close()


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)
