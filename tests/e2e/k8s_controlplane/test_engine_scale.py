"""Scale on a real API server: `stackblaze scale` through /scale, a `kubectl scale` by another field manager,
and what a redeploy's server-side apply (manager `stackblaze`, force) does with each.

Real: the CLI, daemon and engine, the image pushed to a real registry, the API server's server-side apply and
its managedFields bookkeeping, the /scale subresource, the Deployment and ReplicaSet controllers. kwok stands in
for the kubelet (pods are reported Running; no container runs). `kubectl scale` is played by the Python client
sending what kubectl sends: a merge PATCH of /scale with fieldManager=kubectl.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from tests.e2e.k8s_controlplane.stack import APPLY, SETTLE, TARGET, WORKER_SPEC, Cluster, managers
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPEC = WORKER_SPEC
APPLIED = ("f:replicas", "f:selector", "f:strategy", "f:template", "f:minReadySeconds", "f:progressDeadlineSeconds")


def spec_fields(deployment: dict[str, Any], manager: str, operation: str, subresource: str = "") -> set[str]:
    return set(managers(deployment).get((manager, operation, subresource), {}).get("f:spec", {}))


def replica_set_count(cluster: Cluster, count: int) -> Any:
    """Wait for the worker's one live ReplicaSet to want and have `count` replicas; return it."""
    def check() -> Any:
        live = [rs for rs in cluster.replica_sets("shop-worker") if rs.spec.replicas]
        return live[0] if len(live) == 1 and live[0].spec.replicas == live[0].status.replicas == count else None

    return wait_for(f"worker's ReplicaSet at {count} replicas", check, timeout=SETTLE, interval=0.2)


def test_stackblaze_scale_goes_through_scale_and_the_replicaset_follows(cluster: Cluster) -> None:
    """`scale --replicas 3` writes /scale as manager `stackblaze` (the template is not re-applied: the same
    ReplicaSet grows), the controller makes 3 pods, `ps` shows them, and a redeploy of the same spec keeps 3."""
    project = cluster.write(SPEC)
    cluster.deploy(project)
    before = replica_set_count(cluster, 2)
    applied = cluster.deployment("shop-worker")
    assert set(APPLIED) <= spec_fields(applied, "stackblaze", "Apply")

    assert "worker: 2 -> 3 replicas" in cluster.sb.run("scale", "worker", "--replicas", "3", "--target", TARGET).out
    after = replica_set_count(cluster, 3)
    assert after.metadata.name == before.metadata.name
    scaled = cluster.deployment("shop-worker")
    assert scaled["metadata"]["generation"] == applied["metadata"]["generation"] + 1  # only spec.replicas moved
    assert spec_fields(scaled, "stackblaze", "Update", "scale") == {"f:replicas"}
    assert set(APPLIED) - {"f:replicas"} <= spec_fields(scaled, "stackblaze", "Apply")
    pods = {pod.metadata.name for pod in cluster.running_pods("shop-worker", 3)}
    shown = wait_for("ps to show 3 running pods", lambda: [r for r in cluster.replicas("worker")
                                                            if r["state"] == "running"] if len(
        [r for r in cluster.replicas("worker") if r["state"] == "running"]) == 3 else None, timeout=SETTLE,
        interval=0.5)
    assert {r["pod"] for r in shown} == pods

    redeployed = cluster.deploy(project)
    assert "keeping 3 replicas (set by scale; the spec says 2)" in redeployed.err + redeployed.out
    assert replica_set_count(cluster, 3).metadata.name == before.metadata.name
    assert cluster.deployment("shop-worker")["spec"]["replicas"] == 3


def test_a_kubectl_scale_is_kept_by_a_redeploy_of_the_same_release(cluster: Cluster) -> None:
    """After `kubectl scale` (manager kubectl on /scale), kubectl owns spec.replicas and stackblaze keeps the
    template and strategy it applied. A deploy whose stored count agrees with the spec changes nothing: 4 stay.
    Applying our manifest without force is what the API server would refuse (409, kubectl's replicas): the
    engine applies with force, so any apply it makes takes the count back."""
    project = cluster.write(SPEC)
    cluster.deploy(project)
    replica_set_count(cluster, 2)
    cluster.scale_as_kubectl("shop-worker", 4)
    replica_set_count(cluster, 4)
    scaled = cluster.deployment("shop-worker")
    assert spec_fields(scaled, "kubectl", "Update", "scale") == {"f:replicas"}
    owned = spec_fields(scaled, "stackblaze", "Apply")
    assert "f:replicas" not in owned and set(APPLIED) - {"f:replicas"} <= owned

    conflict = applied_without_force(cluster)
    assert conflict.status == 409
    assert [(cause["field"], cause["message"]) for cause in json.loads(conflict.body)["details"]["causes"]] == [
        (".spec.replicas", 'conflict with "kubectl" with subresource "scale" using apps/v1')]

    again = cluster.deploy(project)
    assert "worker: nothing to roll out" in again.out
    assert replica_set_count(cluster, 4)
    assert cluster.deployment("shop-worker")["metadata"]["generation"] == scaled["metadata"]["generation"]


def test_a_kubectl_scale_is_kept_by_a_deploy_of_a_new_release(cluster: Cluster) -> None:
    """The kept-scale rule (README, "Scale is kept": as `kubectl apply` keeps a scaled Deployment, the spec's
    count applies only when it changes): the spec still says 2 and stackblaze's own count is 2, so a new
    release must roll the new template at kubectl's 4, not put the count back to 2."""
    project = cluster.write(SPEC)
    cluster.deploy(project)
    replica_set_count(cluster, 2)
    cluster.scale_as_kubectl("shop-worker", 4)
    replica_set_count(cluster, 4)

    (project / "worker.sh").write_text("#!/bin/sh\necho release two\nexec sleep 1000000\n")
    assert "worker: release 2 (new release)" in cluster.deploy(project).out
    deployment = cluster.deployment("shop-worker")
    assert deployment["spec"]["replicas"] == 4, (
        f"the new release's apply set replicas to {deployment['spec']['replicas']}; managedFields: "
        f"{sorted(managers(deployment))}")


def applied_without_force(cluster: Cluster) -> Any:
    """Our manager's server-side apply of what `render k8s` makes (dry run), without force: the API error."""
    rendered = cluster.sb.run("render", "k8s", str(cluster.root), "--target", TARGET, "--json").json()["manifests"]
    [manifest] = [m for m in rendered if m["kind"] == "Deployment"]
    with pytest.raises(kubernetes.client.ApiException) as refused:
        cluster.apps.patch_namespaced_deployment("shop-worker", cluster.namespace, manifest, dry_run="All",
                                                 field_manager="stackblaze", _content_type=APPLY)
    return refused.value
