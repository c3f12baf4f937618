"""`stackblaze deploy --target` against a real control plane: what it creates, what the controllers make of it,
what a redeploy and a removed service do.

Real: the CLI and daemon, the image (buildah, busybox base) pushed to a real registry, the Kubernetes engine's
server-side applies and deletes, the API server's validation and admission, the controller-manager's Deployment,
ReplicaSet and garbage-collector controllers, the scheduler. kwok stands in for the kubelet: pods are bound and
reported Running, nothing pulls the image or runs a container.
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any

import kubernetes
import pytest

from tests.e2e.k8s_controlplane.stack import SETTLE, TARGET, Cluster, pushed_image
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPEC = """
project: shop
services:
  - name: worker
    start: ./worker.sh emails
    replicas: 2
    min_ready: 0s
    env: {QUEUE: emails}
  - name: mailer
    start: ./worker.sh mail
    min_ready: 0s
"""
MAILER_ONLY = """
project: shop
services:
  - name: mailer
    start: ./worker.sh mail
    min_ready: 0s
"""


def test_deploy_creates_the_deployments_and_secret_in_the_namespace_and_nothing_else(cluster: Cluster) -> None:
    """A Deployment per service and the worker's env in a Secret, in the target's namespace (no Namespace
    named after the project, no Service, no Ingress); each Deployment gets one ReplicaSet from the
    controller-manager and its pods, scheduled on kwok's nodes; the template runs the pushed image by digest."""
    deployed = cluster.deploy(cluster.write(SPEC))
    assert cluster.names("Deployment") == ["shop-mailer", "shop-worker"]
    assert "shop-worker-env" in cluster.names("Secret")
    assert cluster.names("Service") == []
    assert cluster.ingresses() == []
    with pytest.raises(kubernetes.client.ApiException) as missing:
        cluster.core.read_namespace("shop")  # the target names a namespace: none is made after the project
    assert missing.value.status == 404

    assert secret_values(cluster, "shop-worker-env")["QUEUE"] == "emails"
    for service, count in (("worker", 2), ("mailer", 1)):
        name = f"shop-{service}"
        image = pushed_image(deployed, service)
        assert image is not None, deployed.err
        repository, digest = image.split("@")
        assert cluster.registry.manifest(repository.split("/", 1)[1], digest)[0] == digest
        [container] = cluster.deployment(name)["spec"]["template"]["spec"]["containers"]
        assert container["image"] == image

        [replica_set] = wait_for(f"{name}'s ReplicaSet of {count}", partial(sized, cluster, name, count),
                                 timeout=SETTLE, interval=0.2)
        assert [(ref.kind, ref.name) for ref in replica_set.metadata.owner_references] == [("Deployment", name)]
        assert replica_set.spec.template.spec.containers[0].image == image
        pods = cluster.running_pods(name, count)
        assert {pod.metadata.owner_references[0].name for pod in pods} == {replica_set.metadata.name}
        assert {pod.spec.node_name for pod in pods} <= set(cluster.plane.node_names)


def test_only_a_service_with_env_gets_a_secret_and_it_holds_only_the_users_env(cluster: Cluster) -> None:
    """What `render k8s` makes for the same spec, and what the README and manifests.secret_for promise: a
    Secret for the service with env (only its env), none for the one without, and no envFrom there."""
    cluster.deploy(cluster.write(SPEC))
    rendered = cluster.sb.run("render", "k8s", str(cluster.root), "--target", TARGET, "--json").json()["manifests"]
    assert [m["metadata"]["name"] for m in rendered if m["kind"] == "Secret"] == ["shop-worker-env"]
    assert cluster.names("Secret") == ["shop-worker-env"]
    assert secret_values(cluster, "shop-worker-env") == {"QUEUE": "emails"}
    [container] = cluster.deployment("shop-mailer")["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in container


def sized(cluster: Cluster, name: str, count: int) -> list[Any]:
    return [rs for rs in cluster.replica_sets(name) if rs.status.replicas == count]


def secret_values(cluster: Cluster, name: str) -> dict[str, str]:
    secret = cluster.core.read_namespaced_secret(name, cluster.namespace)
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def test_a_new_image_makes_a_new_replicaset_and_a_removed_service_is_pruned(cluster: Cluster) -> None:
    """A changed source is a new image (a new digest): the Deployment's template changes and the controller
    rolls to a second ReplicaSet. A spec without `worker` deletes its Deployment and Secret (and so, through
    the garbage collector, its ReplicaSets and pods) and `mailer` keeps running."""
    project = cluster.write(SPEC)
    first = pushed_image(cluster.deploy(project), "worker")
    old = wait_for("worker's first ReplicaSet", lambda: [rs.metadata.name for rs in cluster.replica_sets(
        "shop-worker")], timeout=SETTLE, interval=0.2)

    (project / "worker.sh").write_text("#!/bin/sh\necho working harder on \"$1\"\nexec sleep 1000000\n")
    second = pushed_image(cluster.deploy(project), "worker")
    assert second is not None and second != first

    def rolled() -> dict[str, tuple[str, int]]:
        sets = {rs.metadata.name: (rs.spec.template.spec.containers[0].image, rs.spec.replicas or 0)
                for rs in cluster.replica_sets("shop-worker")}
        return sets if len(sets) == 2 and sorted(count for _, count in sets.values()) == [0, 2] else {}

    sets = wait_for("a second ReplicaSet of worker, scaled to 2, the first to 0", rolled, timeout=SETTLE,
                    interval=0.2)
    [new] = [name for name in sets if name not in old]
    assert sets[new] == (second, 2)
    assert sets[old[0]] == (first, 0)
    pods = cluster.running_pods("shop-worker", 2)
    assert {pod.spec.containers[0].image for pod in pods} == {second}

    cluster.deploy(cluster.write(MAILER_ONLY))
    wait_for("worker's Deployment, ReplicaSets and pods deleted", lambda: not any(
        "shop-worker" in name for kind in ("Deployment", "ReplicaSet", "Pod") for name in cluster.names(kind)),
        timeout=SETTLE, interval=0.2)
    assert "shop-worker-env" not in cluster.names("Secret")
    assert cluster.names("Deployment") == ["shop-mailer"]
    cluster.running_pods("shop-mailer", 1)
    assert [r["service"] for r in cluster.ps()["services"]] == ["mailer"]
