"""A disk on a real control plane: the PersistentVolumeClaim and the Deployment that mounts it, as `render k8s`
makes them, pass a strict server-side-apply dry run, then are applied for real: the claim is stored as sent
(ReadWriteOnce, the size requested) and the Deployment keeps strategy Recreate and its volume. No storage
provisioner runs here, so the claim stays Pending and no pod starts: what is real is the API server's
validation, defaulting and storage of our objects."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import kubernetes

from stackblaze.engine.kubernetes.manifests import render_manifests
from stackblaze.spec import load_project
from tests.k8s.controlplane import ControlPlane

APPLY = "application/apply-patch+yaml"


def _apply(api: Any, manifest: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
    core: Any = kubernetes.client.CoreV1Api(api)  # Any: the generated signatures want models, we send dicts
    apps: Any = kubernetes.client.AppsV1Api(api)
    batch: Any = kubernetes.client.BatchV1Api(api)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    options = {"field_manager": "stackblaze", "force": True, "_content_type": APPLY, "field_validation": "Strict",
               **({"dry_run": "All"} if dry_run else {})}
    call = {"PersistentVolumeClaim": core.patch_namespaced_persistent_volume_claim,
            "Deployment": apps.patch_namespaced_deployment, "CronJob": batch.patch_namespaced_cron_job}[
        manifest["kind"]]
    return api.sanitize_for_serialization(call(name, namespace, manifest, **options))  # type: ignore[no-any-return]


def test_a_disk_is_accepted_and_stored_as_a_claim_mounted_by_a_recreate_deployment(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    (tmp_path / "stackblaze.yaml").write_text(textwrap.dedent("""\
        project: shop
        services:
          - name: indexer
            start: ./index
            disk: {name: index, mount_path: /var/index, size: 20Gi}
          - name: nightly
            type: cron
            schedule: "0 3 * * *"
            start: ./report
            disk: {mount_path: /srv/reports, size: 512Mi}
        """))
    manifests = [m for m in render_manifests(load_project(tmp_path), namespace=namespace, image="registry.local/x:1")
                 if m["kind"] in ("PersistentVolumeClaim", "Deployment", "CronJob")]
    assert [m["kind"] for m in manifests].count("PersistentVolumeClaim") == 2
    api = control_plane.api_client()
    refused = []
    for manifest in manifests:
        try:
            _apply(api, manifest, dry_run=True)
        except kubernetes.client.ApiException as error:
            refused.append(f"{manifest['kind']} {manifest['metadata']['name']}: {error.status} "
                           f"{json.loads(error.body or '{}').get('message')}")
    assert refused == []

    for manifest in manifests:
        _apply(api, manifest, dry_run=False)
    core = kubernetes.client.CoreV1Api(api)
    claim = api.sanitize_for_serialization(core.read_namespaced_persistent_volume_claim("shop-index-disk", namespace))
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"] == {"storage": "20Gi"}
    stored = api.sanitize_for_serialization(
        kubernetes.client.AppsV1Api(api).read_namespaced_deployment("shop-indexer", namespace))
    assert stored["spec"]["strategy"] == {"type": "Recreate"}
    pod = stored["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "disk", "persistentVolumeClaim": {"claimName": "shop-index-disk"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "disk", "mountPath": "/var/index"}]
    cron = api.sanitize_for_serialization(
        kubernetes.client.BatchV1Api(api).read_namespaced_cron_job("shop-nightly", namespace))
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"] == [
        {"name": "disk", "persistentVolumeClaim": {"claimName": "shop-nightly-disk"}}]
    assert core.read_namespaced_persistent_volume_claim("shop-nightly-disk", namespace).spec.resources.requests == {
        "storage": "512Mi"}
