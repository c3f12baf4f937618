"""Idle pods first when the HPA scales a worker down on a real control plane: the queue-metrics server, run in
the cluster as its own ServiceAccount (the Role queue_metrics.py renders), reads which RQ workers are busy from a
real redis-server, writes each pod's `controller.kubernetes.io/pod-deletion-cost`, and the real ReplicaSet
controller, scaled through /scale as the HPA does, deletes the idle pods and keeps the busy ones.

Real: etcd, the API server (RBAC included: the server's token is a real TokenRequest of its ServiceAccount), the
Deployment and ReplicaSet controllers, redis-server, RQ's own Worker registering its hash, and the server's app
with its lifespan. Not real: the pods' containers (kwok reports them Running and Ready, no worker runs: the RQ
workers are registered by this test under the pods' names, as a worker in each pod would register its hostname);
the in-cluster mount (the token and CA are written to a folder given to the server instead of the kubelet's).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis
import rq
import yaml

from stackblaze.engine.autoscale.deletion_cost import COST, with_pod_costs
from stackblaze.engine.autoscale.metrics_server import create_app, load_config
from stackblaze.engine.kubernetes.client import KubeClient
from stackblaze.engine.kubernetes.manifests import MANAGER, labels, object_name, selector_labels
from stackblaze.engine.kubernetes.queue_metrics import CONFIG_FILE, queue_metrics_manifests
from stackblaze.errors import UserError
from stackblaze.spec.autoscale import Queues
from tests.integration.conftest import redis_url, wait_for  # noqa: F401 (a redis-server of the test's own)
from tests.k8s.controlplane import ControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROJECT, SERVICE = "shop", "worker"
NAME = object_name(PROJECT, SERVICE)
SETTLE = 60.0
ACCESS = ("ServiceAccount", "Role", "RoleBinding")


def worker_deployment(replicas: int) -> dict[str, Any]:
    """The worker's Deployment with the labels manifests.py gives a worker's pods (what the server selects by)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector_labels(PROJECT, SERVICE)},
                     "template": {"metadata": {"labels": labels(PROJECT, SERVICE)},
                                  "spec": {"containers": [{"name": SERVICE, "image": "busybox:1.36",
                                                           "command": ["sleep", "1000000"]}]}}}}


def ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True"
                                                 for c in pod.status.conditions or [])


@pytest.fixture
def four_pods(control_plane: ControlPlane, namespace: str) -> Iterator[list[str]]:
    """The worker at 4 replicas, all Running and Ready on kwok nodes: their names, sorted."""
    apps: Any = kubernetes.client.AppsV1Api(control_plane.api_client())
    apps.create_namespaced_deployment(namespace, worker_deployment(4))
    core = control_plane.core()
    selector = ",".join(f"{k}={v}" for k, v in selector_labels(PROJECT, SERVICE).items())

    def running() -> list[str] | None:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return sorted(p.metadata.name for p in pods) if len(pods) == 4 and all(map(ready, pods)) else None

    yield wait_for("4 worker pods Running and Ready", running, timeout=SETTLE, interval=0.2)


def register_rq_workers(url: str, states: dict[str, str]) -> None:
    """A real RQ worker's hash per pod, as a worker in that pod writes it (its hostname is the pod's name)."""
    connection = redis.Redis.from_url(url)
    for host, state in states.items():
        worker = rq.Worker(["default"], name=f"{host}.1", connection=connection)
        worker.hostname = host
        worker.register_birth()  # type: ignore[no-untyped-call]
        worker.set_state(state)


def account_dir(control_plane: ControlPlane, namespace: str, folder: Path) -> tuple[str, dict[str, str]]:
    """What the kubelet mounts for the server's ServiceAccount (a real token of it, the cluster's CA, the
    namespace) and the env it sets, for KubeClient.in_cluster."""
    core = control_plane.core()
    token = core.create_namespaced_service_account_token(
        object_name(PROJECT, "queue-metrics"), namespace,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    [cluster] = [c["cluster"] for c in config["clusters"] if c["name"] == control_plane.context]
    folder.mkdir()
    (folder / "token").write_text(token.status.token)
    (folder / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    (folder / "namespace").write_text(namespace)
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    return str(folder), {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = SETTLE,
                done: Callable[[Any], bool] = bool) -> Any:
    """wait_for without blocking the loop the server's tasks run on: `check`'s value once `done` says so."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {found!r}")
        await asyncio.sleep(0.1)


async def costs(admin: KubeClient, namespace: str) -> dict[str, str | None]:
    pods = await admin.pods(namespace, selector_labels(PROJECT, SERVICE))
    return {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(COST) for p in pods}


async def scale_to_two_and_wait(control_plane: ControlPlane, admin: KubeClient, namespace: str) -> set[str]:
    """/scale to 2, as the HPA writes it; the pods left once the ReplicaSet controller has deleted 2."""
    await admin.scale(NAME, namespace, 2)

    async def two_left() -> set[str] | None:
        left = await admin.pods(namespace, selector_labels(PROJECT, SERVICE))
        return {p["metadata"]["name"] for p in left} if len(left) == 2 else None

    return await until("the worker's pods down to 2", two_left)  # type: ignore[no-any-return]


@pytest.mark.parametrize("writer", ["server", "reversed"])
def test_a_scale_down_deletes_the_idle_pods_and_keeps_the_busy_ones(
        control_plane: ControlPlane, namespace: str, four_pods: list[str], redis_url: str,  # noqa: F811
        tmp_path: Path, writer: str) -> None:
    """writer=server: the queue-metrics server writes the costs (busy 1001, idle 0) and the 2 busy pods are the
    2 left. writer=reversed, the control: the same pods, the same busy state in Redis, but the costs written by
    hand the other way round (idle 1001, busy 0): the 2 idle pods are left, so the first outcome is the
    annotations' doing, not the controller's default order."""
    busy, idle = [four_pods[0], four_pods[2]], [four_pods[1], four_pods[3]]
    register_rq_workers(redis_url, {**{pod: "busy" for pod in busy}, **{pod: "idle" for pod in idle}})
    manifests = queue_metrics_manifests(PROJECT, namespace, {SERVICE: Queues("rq", redis_url, ("default",))},
                                        polls={SERVICE: 0.5})
    [secret] = [m for m in manifests if m["kind"] == "Secret"]
    text = secret["stringData"][CONFIG_FILE]

    async def scenario() -> set[str]:
        admin = KubeClient(context=control_plane.context, kubeconfig=str(control_plane.kubeconfig))
        try:
            for manifest in manifests:
                if manifest["kind"] in ACCESS:  # as the engine applies them, as the deploying user
                    await admin.apply(manifest)
            if writer == "reversed":
                for pod in four_pods:
                    await admin.annotate_pod(pod, namespace, {COST: "1001" if pod in idle else "0"})
                return await scale_to_two_and_wait(control_plane, admin, namespace)
            folder, environ = account_dir(control_plane, namespace, tmp_path / "serviceaccount")
            app = with_pod_costs(create_app(load_config(text, CONFIG_FILE)), text, CONFIG_FILE, default_poll=5.0,
                                 account_dir=folder, environ=environ)
            async with app.router.lifespan_context(app):
                wanted = {pod: "1001" if pod in busy else "0" for pod in four_pods}
                written = await until("the server to write the 4 pods' deletion costs",
                                      lambda: costs(admin, namespace), done=lambda found: found == wanted)
                assert written == wanted
                # The server's ServiceAccount may patch pods, and nothing else: not scale its worker
                server = KubeClient.in_cluster(folder, environ)
                try:
                    with pytest.raises(UserError, match=r"may not scale deployment .*403 Forbidden"):
                        await server.scale(NAME, namespace, 1)
                finally:
                    await server.close()
                left = await scale_to_two_and_wait(control_plane, admin, namespace)
            # The project without its rq worker: the prune (as `kubectl apply --prune`) takes the access away, by label
            project = {"app.kubernetes.io/part-of": PROJECT, "app.kubernetes.io/managed-by": MANAGER}
            access = sorted(f"{m['kind']}/{m['metadata']['name']}" for m in manifests if m["kind"] in ACCESS)
            assert sorted(await admin.prune(project, {NAME}, namespace)) == access
            assert await admin.prune(project, {NAME}, namespace) == []
            return left
        finally:
            await admin.close()

    left = asyncio.run(scenario())
    assert left == set(busy if writer == "server" else idle)
