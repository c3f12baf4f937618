"""What a pod says, in the local engine's words: a replica status (`ps`) and an exit (`events`, `ps`'s last exit).

Pure functions over the pod's API JSON; `wall` maps the cluster's times to real ones (the fake target's
scaled clock; the identity for a real cluster).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from stackblaze.engine.exits import describe_exit, signal_name
from stackblaze.engine.kubernetes.manifests import RELEASE_LABEL
from stackblaze.engine.protocol import ReplicaStatus

Wall = Callable[[float], float]
# How the kubelet words a back-off in the waiting state's message:
# "back-off 20s restarting failed container=worker pod=acme-worker-6d9f..."
_BACK_OFF = re.compile(r"back-off (\d+(?:\.\d+)?)(m?s)\b")
WAITING_TO_START = ("ContainerCreating", "PodInitializing")


def seconds(at: str | None) -> float | None:
    """An API time (RFC 3339) as Unix time."""
    if not at:
        return None
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    status: dict[str, Any] = statuses[0]
    return status


def back_off(message: str | None) -> float | None:
    """The delay in a CrashLoopBackOff message, in seconds (None when it says none)."""
    found = _BACK_OFF.search(message or "")
    if found is None:
        return None
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


def release_of(pod: dict[str, Any]) -> int | None:
    value = pod.get("metadata", {}).get("labels", {}).get(RELEASE_LABEL)
    return int(value) if value and value.isdigit() else None


def exit_of(terminated: dict[str, Any], *, release: int | None, pod: str, wall: Wall) -> dict[str, Any]:
    """A terminated container state as the local engine's exit details (code, signal, meaning, at, ran_for ...)."""
    finished = seconds(terminated.get("finishedAt")) or 0.0
    started = seconds(terminated.get("startedAt")) or finished
    code = terminated.get("exitCode")
    sig = terminated.get("signal")  # rarely set: a signal's death is usually said as 128 + n in exitCode
    reason = terminated.get("reason")
    meaning = describe_exit(code=code, sig=sig, oom_killed=reason == "OOMKilled")
    if reason not in (None, "Error", "Completed"):
        meaning = f"{meaning} ({reason})"
    return {"code": code, "signal": signal_name(sig) if sig else None, "meaning": meaning, "reason": reason,
            "at": wall(finished), "ran_for": max(0.0, wall(finished) - wall(started)), "release": release,
            "key": f"{pod}:{terminated.get('startedAt')}", "pid": None, "killed_after_grace": None,
            "oom_killed": reason == "OOMKilled"}


def image_of(pod: dict[str, Any]) -> str | None:
    """The image the pod's container runs, as its Deployment's template named it (by digest, from a deploy)."""
    containers: list[dict[str, Any]] = pod.get("spec", {}).get("containers") or [{}]
    image = containers[0].get("image")
    return str(image) if image else None


def replica_status(pod: dict[str, Any], *, service: str, replica: int, now: float, wall: Wall,
                   last_lines: list[str]) -> ReplicaStatus:
    """One pod as `ps` shows a replica. States: running, starting (created, not yet running), waiting (to
    restart after an exit, or for its image), stopping (deleted, its container not yet stopped)."""
    metadata = pod.get("metadata", {})
    container = container_status(pod)
    state = container.get("state", {})
    running, waiting = state.get("running"), state.get("waiting")
    terminated = (container.get("lastState") or {}).get("terminated")
    release = release_of(pod)
    started = seconds(running.get("startedAt")) if running else None
    if metadata.get("deletionTimestamp"):
        phase = "stopping"
    elif running:
        phase = "running"
    elif waiting and waiting.get("reason") not in WAITING_TO_START:
        phase = "waiting"  # to restart (CrashLoopBackOff), or for its image (ImagePullBackOff)
    elif state.get("terminated") or (terminated and not waiting):
        phase = "waiting"  # ended, its restart not yet begun
    else:
        phase = "starting"
    reason = waiting.get("reason") if waiting else None
    last_exit = None
    next_restart_at = None
    if terminated:
        last_exit = {**exit_of(terminated, release=release, pod=metadata.get("name", ""), wall=wall),
                     "last_lines": last_lines}
        delay = back_off(waiting.get("message")) if reason == "CrashLoopBackOff" and waiting else None
        finished = seconds(terminated.get("finishedAt"))
        if delay is not None and finished is not None:
            next_restart_at = wall(finished + delay)
    return {
        "service": service, "replica": replica, "state": phase, "release": release, "pid": None,
        "pod": metadata.get("name"), "crash_loop": reason == "CrashLoopBackOff",
        "image": image_of(pod),
        "started_at": wall(started) if started is not None else None,
        "uptime": max(0.0, now - wall(started)) if started is not None else None,
        "restart_count": int(container.get("restartCount", 0)), "last_exit": last_exit,
        "next_restart_at": next_restart_at, "waiting_reason": reason,
        "incoming": None, "stopping": [], "log_lines_dropped": 0, "log_dropping": False,
        "cpu": None, "memory": None,  # metrics-server is not read: `ps` says n/a
    }
