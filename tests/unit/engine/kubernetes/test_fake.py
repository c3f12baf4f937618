"""The fake cluster's behaviour, driven by FakeClock: the kubelet's back-off, logs, rollouts, /scale, restart, prune.

A fake, because no Kubernetes cluster can run here; these tests pin the behaviour the Kubernetes engine's
unit tests rely on, as the real kubelet and deployment controller have it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from stackblaze.engine.clock import FakeClock
from stackblaze.engine.kubernetes.fake import RESTARTED_AT, FakeCluster
from stackblaze.engine.kubernetes.fake_kubelet import stamp
from stackblaze.errors import NotFoundError, UserError


def deployment(name: str = "worker", *, image: str = "app:1", command: list[str] | None = None, replicas: int = 1,
               strategy: dict[str, Any] | None = None, min_ready: int = 0, deadline: int = 600,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": {**selector, **(labels or {})}},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": selector},
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "minReadySeconds": min_ready, "progressDeadlineSeconds": deadline,
            "template": {"metadata": {"labels": selector},
                         "spec": {"containers": [{"name": name, "image": image,
                                                  "command": command or ["python", "-m", name],
                                                  "env": [{"name": "STACKBLAZE_SERVICE", "value": name}]}]}},
        },
    }


def run(test: Callable[[FakeClock, FakeCluster], Coroutine[Any, Any, None]]) -> None:
    async def body() -> None:
        clock = FakeClock()
        await test(clock, FakeCluster(clock))

    asyncio.run(body())


def container(cluster: FakeCluster, pod: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = cluster.pods("shop")[pod]["status"]["containerStatuses"][0]
    return status


def condition(cluster: FakeCluster, kind: str, name: str = "worker") -> dict[str, Any]:
    conditions = cluster.get(name, "shop")["status"]["conditions"]
    found: dict[str, Any] = next(c for c in conditions if c["type"] == kind)
    return found


async def restart_times(clock: FakeClock, cluster: FakeCluster, until: float) -> list[float]:
    """Advance second by second; the clock times (since start) at which the restart count went up."""
    start, seen, times = clock.time(), 0, []
    while clock.time() - start < until:
        await clock.advance(1)
        count = container(cluster)["restartCount"]
        if count > seen:
            times.append(clock.time() - start)
            seen = count
    return times


def test_a_crashing_container_restarts_at_once_then_after_10_20_40_seconds_capped_at_5_minutes() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", exits_after=1, exit_code=3)
        cluster.apply(deployment())
        times = await restart_times(clock, cluster, 1500)
        # Each run lasts 1 s; the gaps between restarts are the back-off plus that second.
        gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
        assert gaps[:7] == [1, 11, 21, 41, 81, 161, 301]
        assert set(gaps[7:]) == {301}
        state = container(cluster)["state"]
        assert "running" in state or state["waiting"]["reason"] == "CrashLoopBackOff"

    run(body)


def test_a_container_that_ran_ten_minutes_starts_a_new_streak() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", exits_after=1)
        cluster.apply(deployment())
        await clock.advance(1 + 1 + 11 + 21)  # four exits: now waiting 40 s
        assert container(cluster)["state"]["waiting"]["message"].startswith("back-off 40s")
        cluster.behave("app:1", exits_after=600)  # the next run lasts ten minutes
        await clock.advance(40)
        assert container(cluster)["restartCount"] == 4
        await clock.advance(600)
        assert container(cluster)["restartCount"] == 5, "after a 10-minute run the restart is immediate"
        assert "running" in container(cluster)["state"]

    run(body)


def test_restart_count_state_and_last_state_are_the_kubelets() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("python -m worker", exits_after=5, exit_code=2)
        cluster.apply(deployment())
        started = clock.time()
        assert container(cluster)["state"] == {"running": {"startedAt": stamp(started)}}
        assert "lastState" not in container(cluster)
        await clock.advance(5)  # first exit: restarted at once
        status = container(cluster)
        assert status["restartCount"] == 1 and status["ready"] is True
        assert status["lastState"] == {"terminated": {"exitCode": 2, "reason": "Error", "startedAt": stamp(started),
                                                      "finishedAt": stamp(started + 5)}}
        await clock.advance(5)  # second exit: CrashLoopBackOff for 10 s
        status = container(cluster)
        assert status["restartCount"] == 1 and status["ready"] is False
        assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert status["lastState"]["terminated"]["startedAt"] == stamp(started + 5)
        # A repeated event is one event with a count, as the API aggregates them.
        counts = [(e["reason"], e["count"]) for e in cluster.events("shop", kind="Pod")]
        assert counts == [("Scheduled", 1), ("Pulled", 2), ("Created", 2), ("Started", 2), ("BackOff", 1)]
        await clock.advance(10)
        assert container(cluster)["restartCount"] == 2

    run(body)


def test_an_oom_kill_is_reported_only_when_the_test_says_so() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", exits_after=3, exit_code=137, reason="OOMKilled")
        cluster.apply(deployment())
        await clock.advance(3)
        assert container(cluster)["lastState"]["terminated"]["reason"] == "OOMKilled"

    run(body)


def test_logs_hold_the_current_run_and_exactly_one_previous_run() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", exits_after=2, lines=["booting", "boom"])
        cluster.apply(deployment())
        pod = cluster.pods("shop")[0]["metadata"]["name"]
        with pytest.raises(UserError, match="previous terminated container"):
            cluster.logs(pod, "shop", previous=True)
        assert cluster.logs(pod, "shop") == "booting\nboom\n"
        cluster.behave("app:1", exits_after=2, lines=["second run"])
        await clock.advance(2)
        assert cluster.logs(pod, "shop", previous=True) == "booting\nboom\n"
        cluster.behave("app:1", exits_after=2, lines=["third run"])
        await clock.advance(2 + 10)
        assert cluster.logs(pod, "shop", previous=True) == "second run\n", "only one previous log is kept"
        assert cluster.logs(pod, "shop", timestamps=True).endswith("Z third run\n")
        assert cluster.logs(pod, "shop", timestamps=True).startswith(stamp(clock.time())[:-1] + ".000000000Z")
        with pytest.raises(NotFoundError):
            cluster.logs("nope", "shop")

    run(body)


def test_a_rolling_update_never_has_fewer_than_replicas_minus_max_unavailable_available() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
        cluster.apply(deployment(replicas=4, strategy=strategy, min_ready=5))
        await clock.advance(5)
        assert cluster.get("worker", "shop")["status"]["availableReplicas"] == 4
        cluster.apply(deployment(image="app:2", replicas=4, strategy=strategy, min_ready=5))
        seen = []
        for _ in range(60):
            status = cluster.get("worker", "shop")["status"]
            seen.append(status["availableReplicas"])
            assert status["availableReplicas"] >= 3
            assert status["replicas"] <= 5, "never more than replicas + maxSurge pods"
            await clock.advance(1)
        status = cluster.get("worker", "shop")["status"]
        assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (4, 4, 4)
        assert min(seen) == 3, "the rollout used its unavailability budget"
        assert condition(cluster, "Progressing")["reason"] == "NewReplicaSetAvailable"
        assert {p["spec"]["containers"][0]["image"] for p in cluster.pods("shop")} == {"app:2"}
        sets = cluster.replica_sets("worker", "shop")
        assert [rs["spec"]["replicas"] for rs in sets] == [0, 4]
        assert all(p["metadata"]["name"].startswith(sets[1]["metadata"]["name"] + "-") for p in cluster.pods("shop"))
        assert len(cluster.pods("shop")[0]["metadata"]["name"]) == len(sets[1]["metadata"]["name"]) + 6
        # Pods alive over the whole rollout, from the ReplicaSets' create/delete events in order.
        alive, peak = 0, 0
        for event in cluster.events("shop", kind="ReplicaSet"):
            alive += {"SuccessfulCreate": 1, "SuccessfulDelete": -1}[event["reason"]] * event["count"]
            peak = max(peak, alive)
        assert peak == 5, "replicas + maxSurge pods at most, and the surge was used"
        messages = [e["message"] for e in cluster.events("shop", kind="Deployment")]
        assert any(m.startswith("Scaled down replica set " + sets[0]["metadata"]["name"]) for m in messages)

    run(body)


def test_reapplying_the_same_template_rolls_nothing() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.apply(deployment(replicas=2))
        pods = [p["metadata"]["name"] for p in cluster.pods("shop")]
        applied = cluster.apply(deployment(replicas=2))
        assert [p["metadata"]["name"] for p in cluster.pods("shop")] == pods
        assert applied["metadata"]["generation"] == 1 and len(cluster.replica_sets("worker", "shop")) == 1

    run(body)


def test_recreate_starts_no_new_pod_until_every_old_one_has_stopped() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", ignores_stop=True)  # killed only after the 30 s termination grace
        cluster.apply(deployment(replicas=3, strategy={"type": "Recreate"}))
        old = {p["metadata"]["name"] for p in cluster.pods("shop")}
        cluster.apply(deployment(image="app:2", replicas=3, strategy={"type": "Recreate"}))
        await clock.advance(29)
        pods = cluster.pods("shop")
        assert {p["metadata"]["name"] for p in pods} == old
        assert all("deletionTimestamp" in p["metadata"] for p in pods)
        assert cluster.get("worker", "shop")["status"]["replicas"] == 0, "terminating pods are not replicas"
        await clock.advance(1)
        pods = cluster.pods("shop")
        assert len(pods) == 3 and not old & {p["metadata"]["name"] for p in pods}
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"app:2"}
        kills = [e for e in cluster.events("shop") if e["reason"] == "Killing"]
        assert len(kills) == 3 and {e["involvedObject"]["name"] for e in kills} == old

    run(body)


def test_a_deleted_pod_that_ignores_sigterm_is_killed_after_its_grace_and_says_so() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", ignores_stop=True)
        manifest = deployment(replicas=2)
        manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5
        cluster.apply(manifest)
        cluster.set_scale("worker", 1, "shop")
        assert len(cluster.pods("shop")) == 2
        await clock.advance(5)
        assert len(cluster.pods("shop")) == 1

    run(body)


def test_a_crash_looping_new_replica_set_hits_the_progress_deadline_and_the_old_keeps_its_pods() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.apply(deployment(replicas=2, min_ready=10, deadline=120))
        await clock.advance(10)
        old = sorted(p["metadata"]["name"] for p in cluster.pods("shop"))
        cluster.behave("app:2", exits_after=2, exit_code=1)
        cluster.apply(deployment(image="app:2", replicas=2, min_ready=10, deadline=120))
        await clock.advance(60)
        assert condition(cluster, "Progressing")["reason"] == "ReplicaSetUpdated"
        await clock.advance(61)
        progressing = condition(cluster, "Progressing")
        assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
        assert progressing["message"].endswith("has timed out progressing.")
        assert condition(cluster, "Available")["status"] == "True"
        status = cluster.get("worker", "shop")["status"]
        assert (status["updatedReplicas"], status["availableReplicas"]) == (1, 2)
        old_set = cluster.replica_sets("worker", "shop")[0]
        assert old_set["spec"]["replicas"] == 2 and old_set["status"]["availableReplicas"] == 2
        assert old == sorted(p["metadata"]["name"] for p in cluster.pods("shop", {"pod-template-hash": old_set[
            "metadata"]["labels"]["pod-template-hash"]}))

    run(body)


def test_a_crash_in_a_finished_rollout_is_not_a_rollout_in_progress() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", exits_after=30)
        cluster.apply(deployment(min_ready=5, deadline=60))
        await clock.advance(10)
        assert condition(cluster, "Progressing")["reason"] == "NewReplicaSetAvailable"
        await clock.advance(600)
        assert condition(cluster, "Progressing")["reason"] == "NewReplicaSetAvailable"

    run(body)


def test_scale_through_the_scale_subresource() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.apply(deployment(replicas=2))
        assert cluster.get_scale("worker", "shop")["spec"]["replicas"] == 2
        scale = cluster.set_scale("worker", 5, "shop")
        assert scale["spec"]["replicas"] == 5 and scale["status"]["replicas"] == 5
        assert scale["status"]["selector"] == "app.kubernetes.io/name=worker"
        assert len(cluster.pods("shop")) == 5 and len(cluster.replica_sets("worker", "shop")) == 1
        cluster.set_scale("worker", 1, "shop")
        assert len(cluster.pods("shop")) == 1
        assert cluster.get("worker", "shop")["status"]["observedGeneration"] == 3
        manifest = deployment()
        del manifest["spec"]["replicas"]
        cluster.apply(manifest)
        assert cluster.get_scale("worker", "shop")["spec"]["replicas"] == 1, "an apply without replicas keeps scale"
        with pytest.raises(NotFoundError, match='"nope" not found'):
            cluster.get_scale("nope", "shop")

    run(body)


def test_the_restart_annotation_rolls_every_pod() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.apply(deployment(replicas=2, min_ready=3))
        await clock.advance(3)
        before = {p["metadata"]["name"] for p in cluster.pods("shop")}
        restarted = cluster.restart("worker", "shop")
        assert restarted["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == stamp(clock.time())
        await clock.advance(10)
        after = {p["metadata"]["name"] for p in cluster.pods("shop")}
        assert len(after) == 2 and not before & after
        assert condition(cluster, "Progressing")["reason"] == "NewReplicaSetAvailable"

    run(body)


def test_prune_deletes_what_the_spec_no_longer_has_with_its_pods() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        project = {"app.kubernetes.io/part-of": "shop"}
        for name in ("web", "mailer", "billing"):
            cluster.apply(deployment(name, labels=project))
        cluster.apply(deployment("other"))
        assert cluster.prune(project, keep=["web"], namespace="shop") == ["billing", "mailer"]
        assert [d["metadata"]["name"] for d in cluster.deployments("shop")] == ["other", "web"]
        assert sorted(p["metadata"]["labels"]["app.kubernetes.io/name"] for p in cluster.pods("shop")) == [
            "other", "web"]
        assert any(e["reason"] == "Killing" and e["involvedObject"]["name"].startswith("mailer-")
                   for e in cluster.events("shop"))

    run(body)


def test_repeated_events_are_aggregated_with_a_count() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("app:1", exits_after=1)
        cluster.apply(deployment())
        await clock.advance(200)
        backoffs = [e for e in cluster.events("shop", kind="Pod") if e["reason"] == "BackOff"]
        assert len(backoffs) == 1 and backoffs[0]["count"] >= 4 and backoffs[0]["type"] == "Warning"

    run(body)


def test_a_manifest_the_fake_cannot_honour_is_refused_with_the_field_named() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        manifest = deployment()
        manifest["spec"]["selector"]["matchLabels"] = {"app": "other"}
        with pytest.raises(UserError, match=r"does not match spec\.template\.metadata\.labels"):
            cluster.apply(manifest)
        manifest = deployment()
        manifest["spec"]["template"]["spec"]["containers"] *= 2
        with pytest.raises(UserError, match="exactly one container"):
            cluster.apply(manifest)
        with pytest.raises(UserError, match="apply an apps/v1 Deployment"):
            cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}})
        with pytest.raises(UserError, match="'LoadBalancer' is not served here"):
            cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                           "spec": {"type": "LoadBalancer"}})

    run(body)


def test_an_image_that_cannot_be_pulled_never_starts_and_the_deployment_is_not_available() -> None:
    async def body(clock: FakeClock, cluster: FakeCluster) -> None:
        cluster.behave("registry.example/app:gone", pull_error=True)
        manifest = deployment(image="registry.example/app:gone")
        del manifest["spec"]["strategy"]  # the API's default: RollingUpdate 25% / 25%, so 1 of 1 must be up
        cluster.apply(manifest)
        assert container(cluster)["state"]["waiting"]["reason"] == "ErrImagePull"
        await clock.advance(10)
        status = container(cluster)
        assert status["state"]["waiting"]["reason"] == "ImagePullBackOff" and status["restartCount"] == 0
        assert cluster.pods("shop")[0]["status"]["phase"] == "Pending"
        assert condition(cluster, "Available")["status"] == "False"
        failed = [e for e in cluster.events("shop", kind="Pod") if e["reason"] == "Failed"]
        assert failed and failed[0]["type"] == "Warning" and "registry.example/app:gone" in failed[0]["message"]

    run(body)
