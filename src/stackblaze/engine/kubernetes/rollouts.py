"""A rollout on a cluster, read from its Deployment: the same record and states the local engine's Rollout has.

Complete when the Deployment has observed our generation and every replica is updated and available with none
old left; failed when its Progressing condition says ProgressDeadlineExceeded, or at once when a pod of the
new ReplicaSet exits (or cannot pull its image) before it is available, as the local engine's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackblaze.engine.kubernetes.status import container_status, seconds
from stackblaze.engine.rollouts import RolloutBase

POD_TEMPLATE_HASH = "pod-template-hash"
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")


@dataclass
class ClusterRollout(RolloutBase):
    """`project` is the store's key (acme@prod)."""

    generation: int  # the Deployment's metadata.generation our apply made
    min_ready: float


def _template_key(template: dict[str, Any]) -> Any:
    metadata = dict(template.get("metadata") or {})
    metadata["labels"] = {k: v for k, v in (metadata.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    return {**template, "metadata": metadata}


def new_hash(deployment: dict[str, Any], replica_sets: list[dict[str, Any]]) -> str | None:
    """The pod-template-hash of the Deployment's current template's ReplicaSet (None: not made yet)."""
    wanted = _template_key(deployment.get("spec", {}).get("template", {}))
    for rs in replica_sets:
        if _template_key(rs.get("spec", {}).get("template", {})) == wanted:
            value = rs.get("metadata", {}).get("labels", {}).get(POD_TEMPLATE_HASH)
            return str(value) if value is not None else None
    return None


def counts(deployment: dict[str, Any] | None, pods: list[dict[str, Any]], new: str | None,
           replica_sets: list[dict[str, Any]]) -> dict[str, int]:
    """The figures `deploy` shows while it waits: new replicas running and available, old ones left."""
    replicas = int((deployment or {}).get("spec", {}).get("replicas", 0))
    fresh = [p for p in pods if _hash(p) == new and new is not None]
    running = [p for p in pods if container_status(p).get("state", {}).get("running")]
    available = next((int(rs.get("status", {}).get("availableReplicas", 0)) for rs in replica_sets
                      if new is not None and rs.get("metadata", {}).get("labels", {}).get(POD_TEMPLATE_HASH) == new),
                     0)
    return {"replicas": replicas, "new_running": sum(1 for p in fresh if p in running),
            "new_available": available, "old_running": sum(1 for p in running if p not in fresh)}


def _hash(pod: dict[str, Any]) -> str | None:
    value = pod.get("metadata", {}).get("labels", {}).get(POD_TEMPLATE_HASH)
    return str(value) if value is not None else None


def complete(deployment: dict[str, Any], generation: int) -> bool:
    status, replicas = deployment.get("status", {}), deployment.get("spec", {}).get("replicas", 0)
    progressing = condition(deployment, "Progressing")
    return (status.get("observedGeneration", 0) >= generation and status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas and status.get("availableReplicas", 0) == replicas
            and (progressing is None or progressing.get("reason") == "NewReplicaSetAvailable"))


def deadline_exceeded(deployment: dict[str, Any], generation: int) -> bool:
    progressing = condition(deployment, "Progressing")
    return (deployment.get("status", {}).get("observedGeneration", 0) >= generation and progressing is not None
            and progressing.get("reason") == "ProgressDeadlineExceeded")


def condition(deployment: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for found in deployment.get("status", {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return None


def early_failure(pods: list[dict[str, Any]], new: str | None, min_ready: float) -> dict[str, Any] | None:
    """A pod of the new ReplicaSet whose container ended before it was available, or cannot pull its image:
    the pod, and its terminated state or waiting reason."""
    for pod in pods:
        if new is None or _hash(pod) != new:
            continue
        status = container_status(pod)
        waiting = status.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in PULL_FAILURES:
            return {"pod": pod, "waiting": waiting}
        terminated = (status.get("lastState") or {}).get("terminated") or status.get("state", {}).get("terminated")
        if terminated and not pod.get("metadata", {}).get("deletionTimestamp"):
            ran = (seconds(terminated.get("finishedAt")) or 0.0) - (seconds(terminated.get("startedAt")) or 0.0)
            if ran < min_ready:
                return {"pod": pod, "terminated": terminated}
    return None
