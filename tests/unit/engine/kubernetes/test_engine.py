"""The Kubernetes engine against the in-package fake cluster (FakeApi), driven by FakeClock: apply, /scale, restart,
env changes, the crash loop as `ps` and `events` show it, the log pump, rollouts and their failure, removal.

A fake, because no cluster (and no kubelet) can run here: fake.py's docstring says what it does not model.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stackblaze.engine.clock import FakeClock, ScaledClock
from stackblaze.engine.kubernetes.engine import KubernetesEngine
from stackblaze.engine.kubernetes.fake import FakeCluster
from stackblaze.engine.kubernetes.fake_api import FakeApi, fake_from_target
from stackblaze.engine.protocol import Desired, EngineHooks, RolloutView
from stackblaze.logs.reader import find_logs, last_records
from stackblaze.spec.targets import Target

KEY = "acme@prod"
TARGET = Target(name="prod", kind="fake")
START = "python worker.py"


def want(service: str = "worker", *, release: int = 1, replicas: int = 1, env: dict[str, str] | None = None,
         config: str | None = None, start: str = START, min_ready: float = 0.0) -> Desired:
    return Desired(project=KEY, service=service, replicas=replicas, release=release, cwd="/app", start=start,
                   env={"GREETING": "hi"} if env is None else env, stop_signal=15, shutdown_grace=5.0,
                   strategy="rolling", config=config or f"config-{release}", min_ready=min_ready,
                   progress_deadline=60.0, app="acme", namespace="acme", image=f"reg/acme-{service}:{release}")


class Hooks:
    """The control plane as the engine sees it: a Desired per service, the events recorded, and a failed
    rollout re-pointing the service at its old release (as Control.rollout_failed does)."""

    def __init__(self) -> None:
        self.desired: dict[tuple[str, str], Desired] = {}
        self.releases: dict[tuple[str, str, int], Desired] = {}
        self.events: list[dict[str, Any]] = []
        self.failed: list[RolloutView] = []

    def set(self, desired: Desired) -> None:
        self.desired[(desired.project, desired.service)] = desired
        self.releases[(desired.project, desired.service, desired.release)] = desired

    def record(self, **fields: Any) -> None:
        self.events.append(fields)

    def rollout_failed(self, rollout: RolloutView) -> None:
        self.failed.append(rollout)
        if rollout.from_release is not None:
            self.set(self.releases[(rollout.project, rollout.service, rollout.from_release)])

    async def last_lines(self, *_: Any) -> list[str]:
        return []

    def engine_hooks(self) -> EngineHooks:
        return EngineHooks(desired=lambda key, service: self.desired.get((key, service)),
                           services=lambda: list(self.desired), record_event=self.record,
                           last_lines=self.last_lines, rollout_failed=self.rollout_failed)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


class CountingApi(FakeApi):
    """FakeApi, counting the calls that change a Deployment (to tell /scale from an apply)."""

    def __init__(self, cluster: FakeCluster) -> None:
        super().__init__(cluster)
        self.calls: list[str] = []

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"apply {manifest['kind']}")
        return await super().apply(manifest)

    async def scale(self, name: str, namespace: str, replicas: int) -> dict[str, Any]:
        self.calls.append("scale")
        return await super().scale(name, namespace, replicas)

    async def restart(self, name: str, namespace: str, at: str) -> dict[str, Any]:
        self.calls.append("restart")
        return await super().restart(name, namespace, at)


@dataclass
class World:
    clock: FakeClock
    cluster: FakeCluster
    api: CountingApi
    hooks: Hooks
    engine: KubernetesEngine
    logs_dir: Path

    async def new_engine(self) -> KubernetesEngine:
        engine = KubernetesEngine(self.api, TARGET, self.hooks.engine_hooks(), self.clock, self.logs_dir, poll=1.0)
        await engine.start()
        return engine

    async def deploy(self, desired: Desired, *, fresh: bool = False) -> None:
        self.hooks.set(desired)
        await self.engine.reconcile(desired.project, desired.service, fresh=fresh)

    def ps(self, service: str | None = None) -> list[dict[str, Any]]:
        return self.engine.status(KEY, service)

    def lines(self, service: str = "worker") -> list[str]:
        return [r.line for r in last_records(find_logs(self.logs_dir / KEY, service), None)]


def run(test: Callable[[World], Coroutine[Any, Any, None]], tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock()
        cluster = FakeCluster(clock)
        api = CountingApi(cluster)
        hooks = Hooks()
        world = World(clock, cluster, api, hooks, None, tmp_path / "logs")  # type: ignore[arg-type]
        world.engine = await world.new_engine()
        try:
            await test(world)
        finally:
            await world.engine.close()

    asyncio.run(body())


def test_a_deploy_applies_the_namespace_the_secret_and_the_deployment_and_ps_shows_the_pod(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(want(replicas=2))
        await w.clock.advance(1)
        assert "acme" in w.cluster.namespaces
        assert w.cluster.secrets[("acme", "acme-worker-env")]["stringData"] == {"GREETING": "hi"}
        deployment = w.cluster.get("acme-worker", "acme")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "reg/acme-worker:1"
        assert "GREETING" not in str(container), "secret values only in the Secret"
        rows = w.ps()
        assert [(r["service"], r["replica"], r["state"], r["release"]) for r in rows] == [
            ("worker", 1, "running", 1), ("worker", 2, "running", 1)]
        assert all(r["pod"].startswith("acme-worker-") and r["pid"] is None for r in rows)
        assert w.engine.rollout(KEY, "worker").state == "complete"  # type: ignore[union-attr]

    run(body, tmp_path)


def test_scale_goes_through_the_scale_subresource_and_rolls_nothing(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(want())
        await w.clock.advance(1)
        template = w.cluster.get("acme-worker", "acme")["spec"]["template"]
        pods = {r["pod"] for r in w.ps()}
        w.api.calls.clear()
        await w.deploy(want(replicas=3))
        await w.clock.advance(1)
        assert w.api.calls == ["scale"]
        assert w.cluster.get_scale("acme-worker", "acme")["spec"]["replicas"] == 3
        assert w.cluster.get("acme-worker", "acme")["spec"]["template"] == template
        assert len(w.cluster.replica_sets("acme-worker", "acme")) == 1
        rows = w.ps()
        assert [r["replica"] for r in rows] == [1, 2, 3]
        assert pods <= {r["pod"] for r in rows}, "the running pod keeps running"

    run(body, tmp_path)


def test_restart_rolls_every_pod_onto_a_new_replica_set(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(want(replicas=2))
        await w.clock.advance(1)
        before = {r["pod"] for r in w.ps()}
        await w.deploy(want(replicas=2, config="config-1-restarted"), fresh=True)
        assert "restart" in w.api.calls
        await w.clock.advance(5)
        rows = w.ps()
        assert len(rows) == 2 and all(r["state"] == "running" for r in rows)
        assert not before & {r["pod"] for r in rows}, "every pod was replaced"
        assert len(w.cluster.replica_sets("acme-worker", "acme")) == 2
        assert w.engine.rollout(KEY, "worker").state == "complete"  # type: ignore[union-attr]
        # A restarted daemon applies again, keeping the restart's stamp: the pods do not roll a second time.
        after = {r["pod"] for r in w.ps()}
        await w.engine.close()
        w.engine = await w.new_engine()
        await w.deploy(want(replicas=2, config="config-1-restarted"))
        await w.clock.advance(2)
        assert {r["pod"] for r in w.ps()} == after

    run(body, tmp_path)


def test_an_env_change_rolls_the_pods_with_the_new_secret(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(want())
        await w.clock.advance(1)
        before = w.ps()[0]["pod"]
        await w.deploy(want(env={"GREETING": "hello"}, config="config-1-env"))
        await w.clock.advance(5)
        assert w.cluster.secrets[("acme", "acme-worker-env")]["stringData"] == {"GREETING": "hello"}
        rows = w.ps()
        assert len(rows) == 1 and rows[0]["pod"] != before and rows[0]["state"] == "running"
        await w.deploy(want(env={}, config="config-1-noenv"))
        await w.clock.advance(5)
        assert ("acme", "acme-worker-env") not in w.cluster.secrets, "no env: no Secret"

    run(body, tmp_path)


def test_a_crash_loop_shows_in_ps_with_its_back_off_and_in_events_with_its_last_lines(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.cluster.behave(START, exits_after=1, exit_code=3, lines=["starting", "boom: no database"])
        await w.deploy(want())
        start = w.clock.time()
        await w.clock.advance(3)  # ran 1s, restarted at once, ran 1s again: now backing off 10s
        row = w.ps()[0]
        assert row["state"] == "waiting" and row["waiting_reason"] == "CrashLoopBackOff" and row["crash_loop"]
        assert row["restart_count"] == 1
        assert row["last_exit"]["code"] == 3 and "exit 3" in row["last_exit"]["meaning"]
        assert row["last_exit"]["last_lines"] == ["starting", "boom: no database"]
        assert row["next_restart_at"] == start + 2 + 10
        await w.clock.advance(11)  # restarted at +12, exited at +13: the back-off doubles
        row = w.ps()[0]
        assert row["restart_count"] == 2 and row["next_restart_at"] == start + 13 + 20
        exits = w.hooks.kinds("exit")
        assert len(exits) == 3
        assert exits[-1]["message"].startswith("worker.1 exited (exit 3")
        assert exits[-1]["details"]["last_lines"] == ["starting", "boom: no database"]
        assert exits[-1]["details"]["code"] == 3 and exits[-1]["replica"] == 1
        scheduled = w.hooks.kinds("restart-scheduled")
        assert [e["details"]["delay"] for e in scheduled] == [0.0, 10.0, 20.0]
        imported = w.hooks.kinds("k8s-event")
        back_offs = [e for e in imported if e["details"]["reason"] == "BackOff"]
        assert back_offs and back_offs[0]["message"].startswith("pod acme-worker-")
        assert "Back-off restarting failed container" in back_offs[0]["message"]
        assert any(e["details"]["reason"] == "ScalingReplicaSet" for e in imported)
        keys = [(e["details"]["object"], e["details"]["reason"], e["details"]["count"], e["message"]) for e in imported]
        assert len(keys) == len(set(keys)), "each occurrence once"
        assert await w.engine.logs.previous(KEY, "worker", 1, 1) == ["boom: no database"]

    run(body, tmp_path)


def test_the_log_pump_writes_cri_files_the_readers_read_and_a_new_engine_writes_nothing_twice(
        tmp_path: Path) -> None:
    async def body(w: World) -> None:
        w.cluster.behave(START, exits_after=30, exit_code=1, lines=["one", "two"])
        await w.deploy(want())
        await w.clock.advance(2)
        assert w.lines() == ["one", "two"]
        raw = (w.logs_dir / KEY / "worker" / "1.log").read_text().splitlines()
        assert all(line.split(" ")[1:3] == ["stdout", "F"] and line[26] == "Z" for line in raw)
        await w.engine.close()  # the daemon restarts
        w.engine = await w.new_engine()
        await w.clock.advance(2)
        assert w.lines() == ["one", "two"]
        await w.clock.advance(30)  # it exited at +30 and restarted at once: the new run's lines follow
        await w.clock.advance(2)
        assert w.lines() == ["one", "two", "one", "two"]
        assert w.ps()[0]["replica"] == 1, "the pod kept its number"

    run(body, tmp_path)


def test_a_rollout_to_a_crashing_release_fails_and_the_old_release_comes_back(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(want(replicas=2, min_ready=5))
        await w.clock.advance(7)
        assert w.engine.rollout(KEY, "worker").state == "complete"  # type: ignore[union-attr]
        w.cluster.behave("reg/acme-worker:2", exits_after=1, exit_code=2, lines=["ImportError: no module x"])
        await w.deploy(want(release=2, replicas=2, min_ready=5))
        rollout = w.engine.rollout(KEY, "worker")
        assert rollout is not None and rollout.release == 2
        seen: list[dict[str, Any]] = []
        waiting = asyncio.ensure_future(w.engine.wait_rollout(rollout, on_change=seen.append))
        await w.clock.advance(3)
        record = await asyncio.wait_for(waiting, 1)
        assert record["state"] == "failed" and record["from_release"] == 1 and record["restored"]
        assert "before it was available (min_ready 5s)" in record["reason"]
        assert record["exit"]["last_lines"] == ["ImportError: no module x"]
        assert [r["state"] for r in seen][-1] == "failed"
        assert w.hooks.failed == [rollout]
        assert w.hooks.kinds("rollout-failed")[0]["message"].startswith("worker: release 2 failed to roll out")
        await w.clock.advance(10)
        rows = w.ps()
        assert [(r["state"], r["release"]) for r in rows] == [("running", 1), ("running", 1)]
        assert w.engine.rollout(KEY, "worker") is rollout, "the failed rollout stays the latest"

    run(body, tmp_path)


def test_a_removed_service_loses_its_deployment_and_secret(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(want())
        await w.deploy(want("mailer"))
        await w.clock.advance(1)
        del w.hooks.desired[(KEY, "mailer")]
        await w.engine.reconcile(KEY, "mailer")
        await w.clock.advance(1)
        assert [d["metadata"]["name"] for d in w.cluster.deployments("acme")] == ["acme-worker"]
        assert list(w.cluster.secrets) == [("acme", "acme-worker-env")]
        assert w.ps("mailer") == [] and len(w.ps("worker")) == 1
        await asyncio.wait_for(w.engine.wait_stopped(KEY, "mailer"), 1)

    run(body, tmp_path)


def test_removing_a_service_prunes_by_label_what_no_service_names(tmp_path: Path) -> None:
    """A Deployment of this project that no service names (left by a daemon that lost its state) goes with
    the next removal, as `kubectl apply --prune -l part-of=acme` would; another project's stays."""
    async def body(w: World) -> None:
        await w.deploy(want())
        await w.deploy(want("mailer"))
        orphan = copy.deepcopy(w.cluster.get("acme-worker", "acme"))
        orphan["metadata"] = {"name": "acme-old", "namespace": "acme", "labels": orphan["metadata"]["labels"]}
        orphan.pop("status")
        other = copy.deepcopy(orphan)
        other["metadata"] = {**other["metadata"], "name": "other-app",
                             "labels": {**other["metadata"]["labels"], "app.kubernetes.io/part-of": "other"}}
        w.cluster.apply(orphan)
        w.cluster.apply(other)
        await w.clock.advance(1)
        del w.hooks.desired[(KEY, "mailer")]
        await w.engine.reconcile(KEY, "mailer")
        assert [d["metadata"]["name"] for d in w.cluster.deployments("acme")] == ["acme-worker", "other-app"]

    run(body, tmp_path)


def test_a_fake_target_s_behaviours_reach_its_containers(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        target = Target(name="prod", kind="fake", behaviours={START: {"exits_after": 1.0, "exit_code": 4,
                                                                      "lines": ["bye"]}})
        cluster = fake_from_target(target, w.clock)
        engine = KubernetesEngine(FakeApi(cluster), target, w.hooks.engine_hooks(), w.clock, w.logs_dir, poll=1.0)
        w.hooks.set(want())
        await engine.start()
        await engine.reconcile(KEY, "worker")
        await w.clock.advance(3)
        assert engine.status(KEY)[0]["last_exit"]["code"] == 4
        await engine.close()

    run(body, tmp_path)


def test_a_scaled_clock_runs_a_hundred_times_faster_and_fires_at_its_own_times() -> None:
    async def body() -> None:
        clock = ScaledClock(0.01)
        start, real = clock.time(), time.time()
        fired = asyncio.get_running_loop().create_future()
        clock.call_at(start + 5.0, lambda: fired.set_result(clock.time()))  # 5 clock seconds: 50 ms
        at = await asyncio.wait_for(fired, 2.0)
        elapsed = time.time() - real
        assert at >= start + 5.0
        assert 0.04 <= elapsed < 1.0
        assert abs(clock.to_wall(at) - time.time()) < 0.05
        assert clock.from_wall(clock.to_wall(123456.0)) == pytest.approx(123456.0)

    asyncio.run(body())
