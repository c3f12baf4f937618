"""engine/kubernetes/disks.py: a disk renders as a strictly valid PersistentVolumeClaim (1.31..1.35) and a
volume mounted at its mount_path in the Deployment's (and a CronJob's) pods, with strategy Recreate; the
engine applies the claim before the Deployment on the fake cluster."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stackblaze.engine.kubernetes.disks import claim_for, claim_name
from stackblaze.engine.kubernetes.manifests import deployment_for, render_manifests
from stackblaze.engine.protocol import Desired
from stackblaze.spec import Project, load_project

VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")


@pytest.fixture
def indexer(tmp_path: Path) -> Project:
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
            disk: {mount_path: /srv/reports}
          - name: plain
            start: ./plain
        """))
    return load_project(tmp_path)


def _kind(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def test_render_includes_valid_claims_mounted_by_their_pods(indexer: Project) -> None:
    manifests = render_manifests(indexer, image="registry.local/{service}:1")
    for manifest in manifests:
        for version in VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
    claim = _kind(manifests, "PersistentVolumeClaim", "shop-index-disk")
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}
    assert claim["metadata"]["namespace"] == "shop"
    kinds = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert kinds.index(("PersistentVolumeClaim", "shop-index-disk")) < kinds.index(("Deployment", "shop-indexer"))

    deployment = _kind(manifests, "Deployment", "shop-indexer")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "disk", "persistentVolumeClaim": {"claimName": "shop-index-disk"}}]
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "disk", "mountPath": "/var/index"}]
    assert {"name": "STACKBLAZE_DISK_PATH", "value": "/var/index"} in container["env"]
    assert pod["securityContext"]["fsGroup"] == 10001  # the image's uid may write the fresh volume

    cron_pod = _kind(manifests, "CronJob", "shop-nightly")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron_pod["volumes"] == [{"name": "disk", "persistentVolumeClaim": {"claimName": "shop-nightly-disk"}}]
    assert cron_pod["containers"][0]["volumeMounts"] == [{"name": "disk", "mountPath": "/srv/reports"}]
    assert _kind(manifests, "PersistentVolumeClaim", "shop-nightly-disk")["spec"]["resources"] == {
        "requests": {"storage": "1Gi"}}

    plain = _kind(manifests, "Deployment", "shop-plain")
    assert plain["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "volumes" not in plain["spec"]["template"]["spec"]


def test_the_engine_desired_forces_recreate_even_when_told_rolling() -> None:
    """The spec already makes a disk's strategy recreate; a Desired saying otherwise (an older stored spec)
    still gets a Recreate Deployment."""
    desired = Desired(project="shop@prod", service="indexer", replicas=1, release=3, cwd="/", start="./index",
                      env={}, stop_signal=15, shutdown_grace=30.0, strategy="rolling", config="c", app="shop",
                      namespace="prod", image="registry.local/indexer@sha256:" + "0" * 64,
                      disk={"name": "index", "mount_path": "/var/index", "size": "5Gi", "path": None})
    deployment = deployment_for(desired)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = claim_for(desired)
    assert claim["metadata"] == {**claim["metadata"], "name": "shop-index-disk", "namespace": "prod"}
    for version in VERSIONS:
        kubernetes_validate.validate(deployment, version, strict=True)
        kubernetes_validate.validate(claim, version, strict=True)


def test_claim_names_stay_valid_for_the_longest_names() -> None:
    name = claim_name("a" * 40, "b" * 40)
    assert len(name) <= 253 and name.endswith("-disk") and name == name.lower()
    assert claim_name("a" * 40, "b" * 40) != claim_name("a" * 40, "b" * 39 + "c")


def test_the_engine_applies_the_claim_before_the_deployment_and_keeps_it(tmp_path: Path) -> None:
    """On the fake cluster (no storage provisioner here): the claim is applied first, the Deployment mounts
    it with strategy Recreate, and removing the service leaves the claim (the data) where it is."""
    from dataclasses import replace

    from tests.unit.engine.kubernetes.test_engine import World, run, want

    async def body(w: World) -> None:
        desired = replace(want(), strategy="recreate",
                          disk={"name": "data", "mount_path": "/var/data", "size": "3Gi", "path": None})
        await w.deploy(desired)
        applied = [call for call in w.api.calls if call.startswith("apply")]
        assert applied.index("apply PersistentVolumeClaim") < applied.index("apply Deployment")
        claim = w.cluster.claims[("acme", "acme-data-disk")]
        assert claim["spec"]["resources"] == {"requests": {"storage": "3Gi"}}
        deployment = w.cluster.get("acme-worker", "acme")
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
            "claimName": "acme-data-disk"}
        w.hooks.desired.clear()
        await w.engine.reconcile(desired.project, desired.service)
        assert ("acme", "acme-data-disk") in w.cluster.claims

    run(body, tmp_path)
