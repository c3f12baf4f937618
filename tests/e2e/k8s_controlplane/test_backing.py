"""Backing services against the real API server: the Service, StatefulSet and worker Deployment the Kubernetes
engine makes are accepted by server-side apply with strict field validation (dry run), and applied for real by
the engine (KubeClient, the engine's own reconcile and poll loop): the worker's hostAliases carry the Service's
cluster IP as the API server allocated it, the Service is applied before the Deployment, a worker redeploy (and
a daemon restart's re-apply) leaves the StatefulSet's generation and the Service's resourceVersion as they were,
and a Service deleted behind the engine's back is re-created and the workers re-pointed (K4).

Real: the API server (validation, defaulting, the cluster IP allocator, server-side apply), the
controller-manager (Deployment, ReplicaSet, StatefulSet controllers). The control plane (`desired()`) is
stood in for by the test's hooks (tests/unit/engine/kubernetes/test_engine.Hooks): the engine is what is
under test here; no image is pulled (kwok stands in for the kubelet).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from stackblaze.engine.clock import SystemClock
from stackblaze.engine.kubernetes.backing import backing_for, with_host_aliases
from stackblaze.engine.kubernetes.client import KubeClient
from stackblaze.engine.kubernetes.engine import KubernetesEngine
from stackblaze.engine.kubernetes.manifests import deployment_for
from stackblaze.engine.protocol import Desired
from stackblaze.errors import UserError
from stackblaze.spec.backing import service_variables
from stackblaze.spec.targets import Target
from tests.k8s.controlplane import ControlPlane
from tests.unit.engine.kubernetes.test_engine import Hooks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

APPLY = "application/apply-patch+yaml"
SCHEMA = "1.35.0"
KEY = "acme@cp"
T = TypeVar("T")


def backing(namespace: str, service: str = "cache", kind: str = "redis", password: str | None = None) -> Desired:
    return Desired(project=KEY, service=service, replicas=1, release=1, cwd="", start=kind,
                   env={"PASSWORD": password} if password else {}, stop_signal=15 if kind == "redis" else 2,
                   shutdown_grace=30.0, strategy="recreate", config=f"{service}-config", min_ready=0.0,
                   app="acme", namespace=namespace, kind=kind,
                   backing={"port": 6379 if kind == "redis" else 5432,
                            "auth": "password" if password else "none", "disk_size": "1Gi"})


def worker(namespace: str, release: int = 1) -> Desired:
    return Desired(project=KEY, service="worker", replicas=1, release=release, cwd="/app", start="./worker.sh",
                   env={"REDIS_URL": service_variables("redis", "cache")["REDIS_URL"]}, stop_signal=15,
                   shutdown_grace=5.0, strategy="rolling", config=f"worker-{release}", min_ready=0.0,
                   app="acme", namespace=namespace, image=f"registry.local/acme-worker:{release}",
                   internal=("cache", "db"))


class RecordingClient(KubeClient):
    """The real client, noting each apply's kind in order."""

    applied: list[str]

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
        return await super().apply(manifest)


def dry_run(api: Any, manifest: dict[str, Any]) -> list[str]:
    """Server-side apply and create, dryRun=All with strict field validation; what the server refused."""
    core: Any = kubernetes.client.CoreV1Api(api)
    apps: Any = kubernetes.client.AppsV1Api(api)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    common = {"dry_run": "All", "field_validation": "Strict"}
    apply = {**common, "field_manager": "stackblaze", "force": True, "_content_type": APPLY}
    calls = {
        "Secret": (core.patch_namespaced_secret, core.create_namespaced_secret),
        "Service": (core.patch_namespaced_service, core.create_namespaced_service),
        "StatefulSet": (apps.patch_namespaced_stateful_set, apps.create_namespaced_stateful_set),
        "Deployment": (apps.patch_namespaced_deployment, apps.create_namespaced_deployment),
    }[manifest["kind"]]
    refused = []
    for how, call in (("apply", lambda: calls[0](name, namespace, manifest, **apply)),
                      ("create", lambda: calls[1](namespace, manifest, **common))):
        try:
            call()
        except kubernetes.client.ApiException as error:
            refused.append(f"{how} {manifest['kind']} {name}: {error.status} "
                           f"{json.loads(error.body or '{}').get('message')}")
    return refused


def test_backing_objects_and_an_aliased_worker_pass_a_strict_server_side_apply_dry_run(
        control_plane: ControlPlane, namespace: str) -> None:
    manifests = [m for desired in (backing(namespace), backing(namespace, "db", "postgres", password="pw"),
                                   backing(namespace, "queue", password="pw2"))
                 for objects in [backing_for(desired)]
                 for m in (objects.secret, objects.service, objects.stateful_set) if m is not None]
    manifests.append(with_host_aliases(deployment_for(worker(namespace)), {"cache": "10.96.0.10", "db": "10.96.0.11"}))
    api = control_plane.api_client()
    refused = []
    for manifest in manifests:
        kubernetes_validate.validate(manifest, SCHEMA, strict=True)
        refused += dry_run(api, manifest)
    assert refused == []


async def until(what: str, check: Callable[[], Awaitable[T | None]], timeout: float = 60.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.2)


def test_the_engine_points_the_workers_at_the_services_cluster_ip_and_leaves_it_alone_on_redeploys(
        control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    core: Any = kubernetes.client.CoreV1Api(control_plane.api_client())
    apps: Any = kubernetes.client.AppsV1Api(core.api_client)
    target = Target(name="cp", kind="kubernetes", context=control_plane.context, namespace=namespace)

    def cluster_ip(name: str) -> str:
        return str(core.read_namespaced_service(name, namespace).spec.cluster_ip)

    def host_aliases() -> dict[str, str]:
        pod = apps.read_namespaced_deployment("acme-worker", namespace).spec.template.spec
        return {alias.hostnames[0]: alias.ip for alias in pod.host_aliases or []}

    def marks() -> tuple[int, str]:
        # Not the StatefulSet's resourceVersion: its controller moves it with every status change.
        sts = apps.read_namespaced_stateful_set("acme-cache", namespace)
        return sts.metadata.generation, core.read_namespaced_service("acme-cache", namespace).metadata.resource_version

    async def body() -> None:
        hooks = Hooks()
        client = RecordingClient(context=control_plane.context, kubeconfig=str(control_plane.kubeconfig))
        client.applied = []

        async def open_engine() -> KubernetesEngine:
            engine = KubernetesEngine(client, target, hooks.engine_hooks(), SystemClock(), tmp_path / "logs",
                                      poll=0.5)
            await engine.start()
            return engine

        engine = await open_engine()
        try:
            for desired in (backing(namespace), backing(namespace, "db", "postgres", password="s3cret pw"),
                            worker(namespace)):
                hooks.set(desired)
                await engine.reconcile(KEY, desired.service, fresh=True)
            # K2: the hostAliases are the IPs the API server allocated, read back; the Services came first.
            assert host_aliases() == {"cache.internal": cluster_ip("acme-cache"), "db.internal": cluster_ip("acme-db")}
            assert client.applied == ["Service/acme-cache", "StatefulSet/acme-cache", "Secret/acme-db-env",
                                      "Service/acme-db", "StatefulSet/acme-db", "Secret/acme-worker-env",
                                      "Deployment/acme-worker"]
            secret = core.read_namespaced_secret("acme-worker-env", namespace)
            assert base64.b64decode(secret.data["REDIS_URL"]) == b"redis://cache.internal:6379"
            assert {(s.metadata.name, s.spec.type) for s in core.list_namespaced_service(namespace).items} == {
                ("acme-cache", "ClusterIP"), ("acme-db", "ClusterIP")}
            await until("the StatefulSet's controller made acme-cache-0",
                        lambda: asyncio.to_thread(lambda: [p for p in core.list_namespaced_pod(namespace).items
                                                           if p.metadata.name == "acme-cache-0"]))
            before = marks()

            # K3: two worker redeploys, each reconciling every service as a deploy does; then a new engine
            # (a daemon restart: nothing cached) applies everything again.
            for release in (2, 3):
                for service in ("cache", "db"):
                    await engine.reconcile(KEY, service)
                hooks.set(worker(namespace, release))
                await engine.reconcile(KEY, "worker", fresh=True)
            await engine.close()
            engine = await open_engine()
            for service in ("cache", "db", "worker"):
                await engine.reconcile(KEY, service)
            template = apps.read_namespaced_deployment("acme-worker", namespace).spec.template
            assert template.metadata.labels["stackblaze.dev/release"] == "3"
            assert marks() == before

            # K4: the Service deleted behind the engine's back is applied again (a new IP), and the workers
            # are re-pointed at it.
            old = cluster_ip("acme-cache")
            core.delete_namespaced_service("acme-cache", namespace)

            async def re_pointed() -> str | None:
                try:
                    ip = await asyncio.to_thread(cluster_ip, "acme-cache")
                except kubernetes.client.ApiException:
                    return None
                aliases = await asyncio.to_thread(host_aliases)
                return ip if ip != old and aliases["cache.internal"] == ip else None

            new = await until("the re-created Service's IP in the worker's hostAliases", re_pointed)
            assert host_aliases() == {"cache.internal": new, "db.internal": cluster_ip("acme-db")}
            assert [e["message"] for e in hooks.kinds("recreate")] == [
                f"cache: its Service acme-cache was deleted from namespace {namespace}: applied again"]
        finally:
            await engine.close()
            await client.close()

    asyncio.run(body())


def test_a_new_disk_size_is_refused_by_the_api_server_with_the_way_out(control_plane: ControlPlane, namespace: str,
                                                                      tmp_path: Path) -> None:
    """The real API server's refusal of a changed volumeClaimTemplates becomes one line with the fix."""
    target = Target(name="cp", kind="kubernetes", context=control_plane.context, namespace=namespace)

    async def body() -> None:
        hooks = Hooks()
        client = KubeClient(context=control_plane.context, kubeconfig=str(control_plane.kubeconfig))
        engine = KubernetesEngine(client, target, hooks.engine_hooks(), SystemClock(), tmp_path / "logs", poll=0.5)
        await engine.start()
        try:
            hooks.set(backing(namespace))
            await engine.reconcile(KEY, "cache")
            bigger = backing(namespace)
            hooks.set(replace(bigger, backing={**(bigger.backing or {}), "disk_size": "5Gi"}))
            with pytest.raises(UserError) as refused:
                await engine.reconcile(KEY, "cache")
            assert str(refused.value).startswith("service cache: its StatefulSet acme-cache cannot take this change")
            assert f"kubectl delete statefulset acme-cache -n {namespace} --cascade=orphan" in str(refused.value)
        finally:
            await engine.close()
            await client.close()

    asyncio.run(body())
