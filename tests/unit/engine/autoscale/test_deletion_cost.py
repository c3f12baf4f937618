"""Pod deletion costs (deletion_cost.py), the pure parts: the cost of a busy state, a Celery node name's host,
RQ rows and Celery heartbeats by host (on an injected clock), which pods get a patch, the config's targets, and
that the server is left as it is outside a cluster. The whole path (Redis, the API server's RBAC, the
ReplicaSet controller's choice) runs in tests/e2e/k8s_controlplane/test_deletion_cost.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from stackblaze.engine.autoscale.busy import Busy
from stackblaze.engine.autoscale.celery_busy import Heartbeat
from stackblaze.engine.autoscale.deletion_cost import (
    COST,
    NodeHeartbeats,
    cost,
    node_host,
    plan_costs,
    rq_by_host,
    targets,
    with_pod_costs,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def beat(node: str, active: int, *, pid: int = 7, type_: str = "worker-heartbeat") -> Heartbeat:
    return Heartbeat(type=type_, hostname=node, pid=pid, active=active, processed=0, freq=2.0, timestamp=0.0)


def pod(name: str, value: str | None = None, *, terminating: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if value is not None:
        metadata["annotations"] = {COST: value, "other": "kept"}
    if terminating:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata}


def test_idle_costs_least_then_unknown_then_busy_by_the_jobs_it_holds() -> None:
    assert cost(Busy(False, 0, "rq")) == 0
    assert cost(None) == cost(Busy(None, None, "unknown")) == 1
    assert cost(Busy(True, 1, "rq")) == 1001
    assert cost(Busy(True, 3, "celery")) == 1003
    assert cost(Busy(True, None, "rq")) == 1001  # busy with no count: at least one job
    assert cost(Busy(True, 10**12, "rq")) == 1000 + 1_000_000  # an int32 whatever a broker says


def test_a_celery_node_names_its_host_after_the_at() -> None:
    assert node_host("celery@shop-worker-7d9f-abcde") == "shop-worker-7d9f-abcde"
    assert node_host("mail@shop-worker-7d9f-abcde") == "shop-worker-7d9f-abcde"  # -n mail@%h
    assert node_host("a@b@c") == "b@c"  # Celery splits at the first '@'
    assert node_host("shop-worker-7d9f-abcde") == "shop-worker-7d9f-abcde"


def test_rq_rows_by_host_add_up_the_workers_of_one_pod() -> None:
    rows = [("pod-a", "busy", 0), ("pod-b", "idle", 0), ("pod-c", "idle", 2), ("pod-d", "idle", 0),
            ("pod-d", "busy", 1), ("", "busy", 1)]
    assert rq_by_host(rows) == {
        "pod-a": Busy(True, 1, "rq"), "pod-b": Busy(False, 0, "rq"),
        "pod-c": Busy(True, 2, "rq"),  # executions held: busy whatever its state says
        "pod-d": Busy(True, 1, "rq")}  # two workers in one pod: busy if either is


def test_celery_heartbeats_are_kept_by_node_since_every_pod_has_its_own_pid_1() -> None:
    clock = Clock()
    beats = NodeHeartbeats(clock=clock)
    beats.heard(beat("celery@pod-a", 2, pid=1))
    beats.heard(beat("celery@pod-b", 0, pid=1))
    assert beats.by_host() == {"pod-a": Busy(True, 2, "celery"), "pod-b": Busy(False, 0, "celery")}
    clock.now += 3.1  # an idle word holds 1.5 intervals, a busy one 3
    assert beats.by_host() == {"pod-a": Busy(True, 2, "celery")}
    clock.now += 3.0
    assert beats.by_host() == {}
    beats.heard(beat("celery@pod-a", 1))
    beats.heard(beat("celery@pod-a", 0, type_="worker-offline"))
    assert beats.by_host() == {}


def test_only_the_pods_whose_cost_changed_are_patched_and_terminating_ones_never() -> None:
    found = {"pod-a": Busy(True, 1, "rq"), "pod-b": Busy(False, 0, "rq"),
             "pod-e.workers.shop.svc": Busy(False, 0, "rq")}  # a worker that wrote its FQDN
    pods = [pod("pod-a", "1001"), pod("pod-b", "1001"), pod("pod-c"), pod("pod-d", terminating=True), pod("pod-e")]
    assert plan_costs(pods, found) == {"pod-b": 0, "pod-c": 1, "pod-e": 0}


def test_the_config_says_which_workers_pods_to_annotate_and_refuses_a_bad_entry_in_one_line() -> None:
    def config(**services: Any) -> str:
        return json.dumps({"services": services})

    text = config(work={"kind": "rq", "url": "redis://r/0", "names": ["default"], "poll": 2.5, "pods": {"a": "b"}},
                  mail={"kind": "celery", "url": "redis://r/1", "names": ["celery"], "pods": {"c": "d"}},
                  push={"kind": "bullmq", "url": "redis://r/2", "names": ["push"]})
    assert [(t.service, t.kind, t.selector, t.poll) for t in targets(text, "q.json", default_poll=5.0)] == [
        ("mail", "celery", {"c": "d"}, 5.0), ("work", "rq", {"a": "b"}, 2.5)]
    with pytest.raises(SystemExit, match=r"^q.json: services.push.pods: kind 'bullmq' has no busy source"):
        targets(config(push={"kind": "bullmq", "url": "u", "names": ["p"], "pods": {"a": "b"}}), "q.json",
                default_poll=5.0)
    with pytest.raises(SystemExit, match=r"^q.json: services.work.pods: \[\] is not a mapping of label to value"):
        targets(config(work={"kind": "rq", "url": "u", "names": ["d"], "pods": []}), "q.json", default_poll=5.0)


def test_outside_a_cluster_the_server_is_left_as_it_is(tmp_path: Path) -> None:
    text = json.dumps({"services": {"work": {"kind": "rq", "url": "redis://r/0", "names": ["d"], "pods": {"a": "b"}}}})
    app = FastAPI()
    lifespan = app.router.lifespan_context
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    # A pod without a token (automountServiceAccountToken: false), and a process that is no pod at all
    assert with_pod_costs(app, text, "q.json", default_poll=5.0, account_dir=str(tmp_path), environ=environ) is app
    (tmp_path / "token").write_text("t")
    assert with_pod_costs(app, text, "q.json", default_poll=5.0, account_dir=str(tmp_path), environ={}) is app
    assert app.router.lifespan_context is lifespan
