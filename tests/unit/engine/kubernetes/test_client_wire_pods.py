"""KubeClient.annotate_pod on the wire (the real `kubernetes` client against kmock, as test_client_wire.py): the
exact request that writes a pod's deletion cost. What kmock cannot prove: that the real API server merges the
annotation into the pod's others (tests/e2e/k8s_controlplane/test_deletion_cost.py reads them back there)."""

from __future__ import annotations

import kmock
import pytest

from stackblaze.engine.autoscale.deletion_cost import COST
from stackblaze.engine.kubernetes.api import FIELD_MANAGER
from stackblaze.engine.kubernetes.client import KubeClient
from tests.unit.engine.kubernetes.test_client_wire import NS, SCAFFOLD, kube, only  # noqa: F401 (fixture)

pytestmark = pytest.mark.asyncio


@SCAFFOLD
async def test_annotate_pod_is_a_merge_patch_of_its_annotations_only(kmock: kmock.RawHandler,
                                                                     kube: KubeClient) -> None:  # noqa: F811
    pods = f"/api/v1/namespaces/{NS}/pods"
    answer = kmock[f"patch {pods}/shop-work-5c9f-x2v7q"] << (lambda request: {
        "apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "shop-work-5c9f-x2v7q", "namespace": NS, "annotations": request.data["metadata"]["annotations"]}})

    stored = await kube.annotate_pod("shop-work-5c9f-x2v7q", NS, {COST: "1001"})

    request = only(answer)
    assert (request.method, request.url.path) == ("PATCH", f"{pods}/shop-work-5c9f-x2v7q")
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert request.params == {"fieldManager": FIELD_MANAGER}
    assert request.data == {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "1001"}}}
    assert stored["metadata"]["annotations"] == {COST: "1001"}
