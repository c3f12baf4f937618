"""The cluster's own Events (BackOff, Killing, Started, ScalingReplicaSet ...) as our events, each occurrence once.

The API aggregates a repeat into one Event with a growing `count`: each new count is one more occurrence. What
is already there at the engine's first look is not news (a restarted daemon imported it before).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stackblaze.engine.kubernetes.status import seconds
from stackblaze.engine.protocol import EventSink

KIND = "k8s-event"
Owner = tuple[str, str, int | None]  # (project key, service, replica)


class EventImporter:
    def __init__(self, record_event: EventSink, wall: Callable[[float], float]) -> None:
        self._record = record_event
        self._wall = wall
        self._seen: dict[tuple[str, ...], int] = {}

    def take(self, events: list[dict[str, Any]], owners: Mapping[str, Owner], *, baseline: bool) -> None:
        """Record the occurrences not seen yet of the Events about objects in `owners` (by object name)."""
        for event in sorted(events, key=_when_text):
            involved = event.get("involvedObject") or {}
            owner = owners.get(involved.get("name", ""))
            if owner is None:
                continue
            identity = (event.get("metadata", {}).get("uid") or "", involved.get("kind", ""),
                        involved.get("name", ""), event.get("reason", ""), event.get("message", ""),
                        event.get("firstTimestamp") or "")
            count = int(event.get("count") or 1)
            if count <= self._seen.get(identity, 0):
                continue
            self._seen[identity] = count
            if baseline:
                continue
            key, service, replica = owner
            kind = str(involved.get("kind", "")).lower()
            at = seconds(_when_text(event))
            self._record(project=key, service=service, replica=replica if kind == "pod" else None, kind=KIND,
                         message=f"{kind} {involved.get('name')}: {event.get('reason')}: {event.get('message')}",
                         details={"reason": event.get("reason"),
                                  "object": f"{involved.get('kind')}/{involved.get('name')}", "count": count,
                                  "type": event.get("type"),
                                  "component": (event.get("source") or {}).get("component")},
                         at=self._wall(at) if at is not None else None)


def _when_text(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")
