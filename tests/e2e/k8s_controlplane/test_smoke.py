"""The real control plane answers and acts: a smoke test of the fixture the e2e tier runs on.

Real: etcd, kube-apiserver (validation, admission, server-side apply), the controller-manager's Deployment and
ReplicaSet controllers, the scheduler, built from Go modules at the release tests/k8s/controlplane/go.mod pins.
Not real: the nodes. There is no kubelet here; kwok plays one for a few fake nodes, so pods are bound and
reported Running, but no container runs (what the kubelet does is the fake cluster's job, tests/unit).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
import pytest

from stackblaze.engine.kubernetes.client import KubeClient
from tests.integration.conftest import wait_for
from tests.k8s.controlplane import ControlPlane, pinned

APPLY = "application/apply-patch+yaml"


def deployment(name: str, replicas: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "worker", "image": "busybox:1.36",
                                                           "command": ["sleep", "1000000"]}]}}}}


def test_the_api_server_is_the_pinned_release_and_our_client_reads_its_kubeconfig(control_plane: ControlPlane,
                                                                                    namespace: str) -> None:
    version = kubernetes.client.VersionApi(control_plane.api_client()).get_code()
    assert version.git_version == pinned()["kubernetes"]
    client = KubeClient(context=control_plane.context, kubeconfig=str(control_plane.kubeconfig))
    try:
        assert client.server == control_plane.server
        assert asyncio.run(client.deployments(namespace, {"app": "none"})) == []
    finally:
        asyncio.run(client.close())


def test_the_api_server_validates_what_a_schema_check_cannot(control_plane: ControlPlane, namespace: str) -> None:
    """A selector that does not match the template's labels is valid JSON Schema, and the server refuses it."""
    apps = kubernetes.client.AppsV1Api(control_plane.api_client())
    with pytest.raises(kubernetes.client.ApiException) as refused:
        apps.patch_namespaced_deployment("mismatched", namespace, deployment("mismatched", 1, {"app": "other"}),
                                         field_manager="smoke", _content_type=APPLY)
    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert [(cause["field"], "`selector` does not match template `labels`" in cause["message"]) for cause in causes] \
        == [("spec.template.metadata.labels", True)]


def test_an_applied_deployment_gets_a_replicaset_and_running_pods_on_kwok_nodes(control_plane: ControlPlane,
                                                                                namespace: str) -> None:
    api = control_plane.api_client()
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    applied = apps.patch_namespaced_deployment("web", namespace, deployment("web", 2), field_manager="smoke",
                                               _content_type=APPLY)
    assert [entry.manager for entry in applied.metadata.managed_fields] == ["smoke"]

    def replica_set() -> Any:
        items = apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
        return items[0] if len(items) == 1 and items[0].status.replicas == 2 else None

    owned = wait_for("the controller-manager to make web's ReplicaSet of 2", replica_set, timeout=30)
    assert owned.metadata.owner_references[0].name == "web"
    assert owned.metadata.owner_references[0].kind == "Deployment"

    def running() -> list[Any]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return pods if len(pods) == 2 and all(pod.status.phase == "Running" for pod in pods) else []

    pods = wait_for("2 pods of web scheduled and Running on kwok nodes", running, timeout=30)
    assert {pod.metadata.owner_references[0].name for pod in pods} == {owned.metadata.name}
    assert all(pod.spec.node_name in control_plane.node_names for pod in pods)

    def available() -> Any:
        read = apps.read_namespaced_deployment_status("web", namespace)
        return read if read.status.available_replicas == 2 else None

    status = wait_for("web's Deployment to report 2 available replicas", available, timeout=30)
    assert status.status.ready_replicas == 2
