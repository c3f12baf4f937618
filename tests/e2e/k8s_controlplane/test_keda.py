"""KEDA's objects on a real API server: with KEDA's own CRDs (v2.20.2, vendored in tests/k8s/crds) installed,
the ScaledObjects (and the TriggerAuthentication) `render k8s` makes for every queue kind are accepted by a
server-side apply with strict field validation, which enforces the CRD's structural schema and its CEL rules;
a misspelt field and min > max are refused, so the acceptance means something. Before the CRDs are there, the
engine's client says in one line which CRD is missing and to install KEDA.

Real: the API server (apiextensions, structural schemas, CEL, server-side apply) and the stackblaze client. No
KEDA operator runs (its image cannot be pulled here): what KEDA would then do with the objects is not tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from stackblaze.engine.kubernetes.client import KubeClient
from stackblaze.engine.kubernetes.manifests import render_manifests
from stackblaze.errors import UserError
from stackblaze.spec import load_project
from tests.integration.conftest import wait_for
from tests.k8s import keda_crd
from tests.k8s.controlplane import ControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

APPLY = "application/apply-patch+yaml"
PLURALS = {"ScaledObject": "scaledobjects", "TriggerAuthentication": "triggerauthentications"}
QUEUES = {
    "celery": "{kind: celery, url: 'redis://cache.internal:6379/0', names: [celery, priority]}",
    "rq": "{kind: rq, url: 'redis://redis.example:6379/0', names: [default]}",
    "bullmq": "{kind: bullmq, url: 'redis://redis.example:6379', names: [email]}",
    "dramatiq": "{kind: dramatiq, url: 'redis://redis.example:6379/0', names: [default]}",
    "redis-list": "{kind: redis-list, url: 'redis://redis.example:6379/0', names: [jobs]}",
    "rabbitmq": "{kind: rabbitmq, url: 'http://guest:pw@mq.example:15672/%2F', names: [orders, orders.retry]}",
    "nats": "{kind: nats, url: 'https://nats.example:8222?acc=APP', names: [ORDERS/w, EVENTS/w]}",
}


def project_dir(tmp_path: Path, kind: str) -> Path:
    (tmp_path / "stackblaze.yaml").write_text(
        "project: shop\nservices:\n  - name: work\n    start: python -m work\n    autoscale:\n      min: 1\n"
        f"      max: 8\n      queues: {QUEUES[kind]}\n      tolerance: 0.05\n      on_metric_error: fallback:2\n"
        "      latency_slo: 30s\n"
        "      scale_down: {window: 60s, policies: [{pods: 1, period: 30s}], select: min}\n", encoding="utf-8")
    return tmp_path


def keda_objects(tmp_path: Path, kind: str, namespace: str) -> list[dict[str, Any]]:
    manifests = render_manifests(load_project(project_dir(tmp_path, kind)), namespace=namespace)
    return [m for m in manifests if m["apiVersion"] == "keda.sh/v1alpha1"]


def extensions(plane: ControlPlane) -> Any:
    return kubernetes.client.ApiextensionsV1Api(plane.api_client())


def remove_crds(plane: ControlPlane) -> None:
    api = extensions(plane)
    for kind in keda_crd.FILES:
        name = keda_crd.crd(kind)["metadata"]["name"]
        try:
            api.delete_custom_resource_definition(name)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    def gone() -> bool:
        names = {item.metadata.name for item in api.list_custom_resource_definition().items}
        return not names & {keda_crd.crd(kind)["metadata"]["name"] for kind in keda_crd.FILES}
    wait_for("KEDA's CRDs deleted", gone, timeout=60, interval=0.2)


@pytest.fixture(scope="module")
def keda_crds(control_plane: ControlPlane) -> Iterator[None]:
    """KEDA's CRDs installed as its release installs them, Established, and removed after this module."""
    api = extensions(control_plane)
    for kind in keda_crd.FILES:
        body = keda_crd.crd(kind)
        api.patch_custom_resource_definition(body["metadata"]["name"], body, field_manager="keda-install",
                                             force=True, _content_type=APPLY)

    def established() -> bool:
        for kind in keda_crd.FILES:
            status = api.read_custom_resource_definition(keda_crd.crd(kind)["metadata"]["name"]).status
            if not any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
                return False
        return True
    wait_for("KEDA's CRDs Established", established, timeout=60, interval=0.2)
    yield
    remove_crds(control_plane)


def strict_apply(plane: ControlPlane, manifest: dict[str, Any]) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(plane.api_client())
    where = ("keda.sh", "v1alpha1", manifest["metadata"]["namespace"], PLURALS[manifest["kind"]],
             manifest["metadata"]["name"])
    stored: dict[str, Any] | None = custom.patch_namespaced_custom_object(
        *where, manifest, field_manager="stackblaze", force=True, field_validation="Strict", _content_type=APPLY)
    # The generated client decodes a 200's body only; a first apply answers 201 (created): read it back.
    return stored if stored is not None else custom.get_namespaced_custom_object(*where)


def test_without_keda_the_client_names_the_crd_and_says_install_keda(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    remove_crds(control_plane)  # a module before may have left them; this test is about a cluster without
    [scaled] = keda_objects(tmp_path, "rq", namespace)
    client = KubeClient(context=control_plane.context, kubeconfig=str(control_plane.kubeconfig))

    async def attempt() -> list[str]:
        try:
            with pytest.raises(UserError) as refused:
                await client.apply(scaled)
            message = str(refused.value)
            assert "scaledobjects.keda.sh" in message and "install KEDA" in message and "\n" not in message
            # A prune on such a cluster still works: there is nothing of KEDA's kinds to prune
            return await client.prune({"app.kubernetes.io/part-of": "shop"}, set(), namespace)
        finally:
            await client.close()
    assert asyncio.run(attempt()) == []


@pytest.mark.parametrize("kind", list(QUEUES))
def test_every_kinds_keda_objects_are_accepted_strictly_and_stored_as_rendered(
        control_plane: ControlPlane, keda_crds: None, namespace: str, tmp_path: Path, kind: str) -> None:
    objects = keda_objects(tmp_path, kind, namespace)
    assert objects[-1]["kind"] == "ScaledObject"
    for manifest in objects:
        stored = strict_apply(control_plane, manifest)
        assert stored["spec"] == manifest["spec"], "nothing pruned, nothing defaulted away"
    scaled = objects[-1]["spec"]
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["tolerance"] == "0.05"
    # latency_slo: a metricType Value trigger on the queue-metrics server's `latency` (kinds KEDA cannot count)
    latency = [t for t in scaled["triggers"] if t["name"] == "latency"]
    assert [t.get("metricType") for t in latency] == (["Value"] if kind not in ("rabbitmq", "nats") else [])


def test_the_engines_client_applies_and_prunes_keda_objects(
        control_plane: ControlPlane, keda_crds: None, namespace: str, tmp_path: Path) -> None:
    objects = keda_objects(tmp_path, "rabbitmq", namespace)
    client = KubeClient(context=control_plane.context, kubeconfig=str(control_plane.kubeconfig))
    selector = {"app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "stackblaze"}

    async def apply_then_prune() -> tuple[list[dict[str, Any]], list[str]]:
        try:
            stored = [await client.apply(manifest) for manifest in objects]
            return stored, await client.prune(selector, set(), namespace)
        finally:
            await client.close()
    stored, pruned = asyncio.run(apply_then_prune())
    assert [s["kind"] for s in stored] == ["TriggerAuthentication", "ScaledObject"]
    assert sorted(pruned) == ["ScaledObject/shop-work", "TriggerAuthentication/shop-work-autoscale"]
    custom = kubernetes.client.CustomObjectsApi(control_plane.api_client())
    wait_for("the ScaledObject deleted", lambda: not custom.list_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects")["items"], timeout=30, interval=0.2)


@pytest.mark.parametrize(("change", "refusal"), [
    (lambda spec: spec.update(pollingInteval=5), ".spec.pollingInteval: field not declared in schema"),
    (lambda spec: spec.update(minReplicaCount=9), "minReplicaCount must be less than or equal to maxReplicaCount"),
    (lambda spec: spec["triggers"][0].pop("metadata"), "spec.triggers[0].metadata: Required value"),
], ids=["misspelt field", "min above max", "trigger without metadata"])
def test_a_bad_scaled_object_is_refused(control_plane: ControlPlane, keda_crds: None, namespace: str,
                                        tmp_path: Path, change: Any, refusal: str) -> None:
    [scaled] = keda_objects(tmp_path, "celery", namespace)
    change(scaled["spec"])
    with pytest.raises(kubernetes.client.ApiException) as refused:
        strict_apply(control_plane, scaled)
    # A server-side apply of a field the structural schema lacks fails to build its typed patch: the API server
    # answers 500 for that (1.37), 422 for what validation refuses; both refuse, which is what is tested.
    assert refused.value.status in (422, 500) and refusal in str(refused.value.body), refused.value.body
