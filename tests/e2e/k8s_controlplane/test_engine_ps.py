"""`stackblaze ps --target` reads the pods the real API server holds: Running ones, and a crash loop as the
kubelet would report it.

Real: the CLI, daemon and engine (polling the cluster every 2 s), the API server, the ReplicaSet controller and
scheduler that make and bind the pods. kwok stands in for the kubelet: it marks the pods Running. There is no
kubelet to crash a container, so the crash loop is written the way a kubelet writes it: a patch of the pod's
`status` subresource (waiting in CrashLoopBackOff, restartCount 3, lastState terminated with exit code 3).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.k8s_controlplane.stack import SETTLE, TARGET, WORKER_SPEC, Cluster
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPEC = WORKER_SPEC


def crash_loop(container: str, pod: str) -> dict[str, Any]:
    """A kubelet's status of a container that exited 3 for the third time and waits out its back-off."""
    now = datetime.now(UTC).replace(microsecond=0)
    at = {"startedAt": (now - timedelta(seconds=3)).isoformat().replace("+00:00", "Z"),
          "finishedAt": (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")}
    return {"status": {
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                       {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"}],
        "containerStatuses": [{
            "name": container, "ready": False, "started": False, "restartCount": 3,
            "state": {"running": None, "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 40s restarting failed container={container} pod={pod}"}},
            "lastState": {"terminated": {"exitCode": 3, "reason": "Error", **at}},
        }],
    }}


def test_ps_shows_the_running_pods_and_reads_a_patched_crash_loop(cluster: Cluster) -> None:
    cluster.deploy(cluster.write(SPEC))
    pods = sorted(pod.metadata.name for pod in cluster.running_pods("shop-worker", 2))

    def running() -> list[dict[str, Any]]:
        rows = cluster.replicas("worker")
        return rows if len(rows) == 2 and all(row["state"] == "running" for row in rows) else []

    rows = wait_for("ps --json to show 2 running replicas", running, timeout=SETTLE, interval=0.5)
    assert sorted(row["pod"] for row in rows) == pods
    assert sorted(row["replica"] for row in rows) == [1, 2]
    assert all(row["restart_count"] == 0 and row["last_exit"] is None for row in rows)

    crashing = pods[0]
    cluster.core.patch_namespaced_pod_status(crashing, cluster.namespace, crash_loop("worker", crashing),
                                             _content_type="application/strategic-merge-patch+json")

    def crash_looping() -> dict[str, Any] | None:
        return next((row for row in cluster.replicas("worker") if row["pod"] == crashing
                     and row["state"] == "waiting"), None)

    # The engine looks every 2 s on a real cluster.
    row = wait_for(f"ps --json to read {crashing} as waiting", crash_looping, timeout=30, interval=0.5)
    assert (row["waiting_reason"], row["crash_loop"], row["restart_count"]) == ("CrashLoopBackOff", True, 3)
    assert (row["last_exit"]["code"], row["last_exit"]["reason"]) == (3, "Error")
    assert row["next_restart_at"] is not None  # the back-off the message gives, from finishedAt
    other = next(r for r in cluster.replicas("worker") if r["pod"] != crashing)
    assert (other["state"], other["restart_count"]) == ("running", 0)

    table = cluster.sb.run("ps", "--target", TARGET).out
    [line] = [line for line in table.splitlines() if crashing in line]
    assert line.startswith("worker.") and "waiting (crash loop, restart in" in line and "exit 3:" in line, table
    events = [json.loads(line) for line in cluster.sb.run(
        "events", "--target", TARGET, "-n", "100", "--json").out.splitlines() if line.strip()]
    exits = [e for e in events if e["kind"] == "exit"]
    assert [(e["details"]["code"], e["details"]["pod"]) for e in exits] == [(3, crashing)]
