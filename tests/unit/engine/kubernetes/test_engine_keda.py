"""The Kubernetes engine and KEDA, against the in-package fake cluster (its FakeKeda stores ScaledObjects as the
API server does where KEDA's CRDs are installed, and refuses them where they are not; no KEDA operator runs, so
nothing here scales: what is tested is what the engine applies, in which order, and what it never does)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stackblaze.engine.kubernetes.keda import PAUSED_REPLICAS
from stackblaze.engine.protocol import Desired
from stackblaze.errors import UserError
from stackblaze.spec.autoscale import Autoscale, read_autoscale
from tests.k8s import keda_crd
from tests.unit.engine.kubernetes.test_engine import KEY, World, run, want


def spec(kind: str = "celery", url: str = "redis://10.1.2.3:6379/0", names: tuple[str, ...] = ("celery",)
         ) -> Autoscale:
    return read_autoscale({"max": 6, "queues": {"kind": kind, "url": url, "names": list(names)}}, lambda key: key)


def scaled(service: str = "worker", autoscale: Autoscale | None = None, **changes: object) -> Desired:
    return dataclasses.replace(want(service), autoscale=autoscale or spec(), **changes)  # type: ignore[arg-type]


def test_an_autoscaled_worker_gets_a_scaled_object_after_its_deployment_and_no_replicas(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.api.calls.clear()
        await w.deploy(scaled())
        applied = [call for call in w.api.calls if call != "apply Namespace"]
        assert applied.index("apply Deployment") < applied.index("apply ScaledObject")
        assert "scale" not in w.api.calls
        stored = w.api.keda.get("ScaledObject", "acme-worker", "acme")
        assert stored is not None and stored["spec"]["scaleTargetRef"]["name"] == "acme-worker"
        keda_crd.validate(stored)
        # The queue-metrics server KEDA's metrics-api trigger reads, in the same namespace
        assert [d["metadata"]["name"] for d in w.cluster.deployments("acme")] == ["acme-queue-metrics", "acme-worker"]
        assert ("acme", "acme-queue-metrics") in w.cluster.secrets
        assert stored["spec"]["triggers"][0]["metadata"]["url"].startswith("http://acme-queue-metrics.acme.svc:")

    run(body, tmp_path)


def test_a_manual_scale_pauses_keda_at_that_count_and_auto_resumes(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(scaled())
        w.api.calls.clear()
        await w.deploy(scaled(replicas=3, autoscale_paused=3))
        assert "scale" not in w.api.calls, "KEDA scales to the paused count; /scale would be undone by its HPA"
        stored = w.api.keda.get("ScaledObject", "acme-worker", "acme")
        assert stored is not None and stored["metadata"]["annotations"] == {PAUSED_REPLICAS: "3"}
        await w.deploy(scaled(replicas=3))
        stored = w.api.keda.get("ScaledObject", "acme-worker", "acme")
        assert stored is not None and PAUSED_REPLICAS not in stored["metadata"].get("annotations", {})

    run(body, tmp_path)


def test_without_keda_an_autoscaled_worker_fails_in_one_line_and_the_others_deploy(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.api.keda.installed = False
        await w.deploy(want("plain"))  # never touches KEDA's kinds
        assert w.cluster.get("acme-plain", "acme")["spec"]["replicas"] == 1
        with pytest.raises(UserError) as refused:
            await w.deploy(scaled())
        message = str(refused.value)
        assert "scaledobjects.keda.sh" in message and "install KEDA" in message and "\n" not in message
        # Its Deployment is there, under the restart policy, at Kubernetes' default of 1 replica
        assert w.cluster.get("acme-worker", "acme")["spec"]["replicas"] == 1

    run(body, tmp_path)


def test_a_worker_no_longer_autoscaled_loses_its_keda_objects_and_gets_its_count_back(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(scaled(autoscale=spec("rabbitmq", "http://u:pw@mq.example:15672/%2F", ("orders",))))
        await w.deploy(scaled("mailer"))
        assert {(kind, name) for kind, _, name in w.api.keda.objects} == {
            ("ScaledObject", "acme-worker"), ("TriggerAuthentication", "acme-worker-autoscale"),
            ("ScaledObject", "acme-mailer")}
        assert ("acme", "acme-worker-autoscale") in w.cluster.secrets
        await w.deploy(dataclasses.replace(want(replicas=2), config="config-2"))
        assert {(kind, name) for kind, _, name in w.api.keda.objects} == {("ScaledObject", "acme-mailer")}
        assert ("acme", "acme-worker-autoscale") not in w.cluster.secrets
        assert w.cluster.get("acme-worker", "acme")["spec"]["replicas"] == 2
        # mailer (celery) still needs the queue-metrics server; once it goes, the server goes with it
        assert "acme-queue-metrics" in [d["metadata"]["name"] for d in w.cluster.deployments("acme")]
        await w.deploy(dataclasses.replace(want("mailer"), config="config-2"))
        assert w.api.keda.objects == {}
        assert "acme-queue-metrics" not in [d["metadata"]["name"] for d in w.cluster.deployments("acme")]
        assert ("acme", "acme-queue-metrics") not in w.cluster.secrets

    run(body, tmp_path)


def test_a_removed_autoscaled_worker_is_pruned_with_its_scaled_object(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(scaled())
        await w.deploy(scaled("mailer", autoscale=spec("rq", names=("default",))))
        del w.hooks.desired[(KEY, "mailer")]
        await w.engine.reconcile(KEY, "mailer")
        assert [name for _, _, name in w.api.keda.objects] == ["acme-worker"]
        config = w.cluster.secrets[("acme", "acme-queue-metrics")]["stringData"]["queues.json"]
        assert '"worker"' in config and '"mailer"' not in config  # the server no longer reads mailer's queues
        del w.hooks.desired[(KEY, "worker")]
        await w.engine.reconcile(KEY, "worker")
        assert w.api.keda.objects == {} and w.cluster.deployments("acme") == []

    run(body, tmp_path)
