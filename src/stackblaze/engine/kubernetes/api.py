"""What the Kubernetes engine asks of a cluster: the few API calls it makes, as plain dicts in the API's own
JSON shape (camelCase, as `kubectl get -o json` prints them).

Two implementations: `client.py` (the official `kubernetes` client against a real API server; the only module
that imports it) and `fake.FakeApi` (the in-memory fake cluster). Every call is async: the real client blocks,
so it runs in a worker thread; the fake runs on the event loop, where its timers live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

Manifest = dict[str, Any]
FIELD_MANAGER = "stackblaze"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # the pod-template annotation `kubectl rollout restart` sets


class ClusterApi(Protocol):
    async def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply (PATCH, application/apply-patch+yaml, fieldManager=stackblaze, force=true) of a
        Namespace, Secret, Deployment, Service or StatefulSet; the object as stored comes back."""
        ...

    async def deployment(self, name: str, namespace: str) -> Manifest | None:
        """The Deployment with its status; None when there is none."""
        ...

    async def deployments(self, namespace: str, selector: dict[str, str]) -> list[Manifest]: ...

    async def service(self, name: str, namespace: str) -> Manifest | None:
        """The Service (spec.clusterIP is what a backing service's hostAliases point at); None when absent."""
        ...

    async def stateful_set(self, name: str, namespace: str) -> Manifest | None:
        """The StatefulSet with its status; None when there is none."""
        ...

    async def scale(self, name: str, namespace: str, replicas: int) -> Manifest:
        """PATCH the Deployment's /scale subresource (spec.replicas only)."""
        ...

    async def restart(self, name: str, namespace: str, at: str) -> Manifest:
        """Patch the pod template's RESTARTED_AT annotation to `at` (RFC 3339), as `kubectl rollout restart`."""
        ...

    async def delete(self, kind: str, name: str, namespace: str) -> bool:
        """Delete a Deployment, Secret, Service or StatefulSet (foreground: a Deployment's or StatefulSet's pods go
        with it, never its volume claims); False when absent."""
        ...

    async def prune(self, selector: dict[str, str], keep: set[str], namespace: str) -> list[str]:
        """Delete every Deployment, Secret, Service and StatefulSet with these labels whose name is not in `keep`:
        `kind/name` each. PersistentVolumeClaims stay: a removed backing service's data is kept."""
        ...

    async def replica_sets(self, namespace: str, selector: dict[str, str]) -> list[Manifest]: ...

    async def pods(self, namespace: str, selector: dict[str, str]) -> list[Manifest]: ...

    async def logs(self, pod: str, namespace: str, *, previous: bool = False, timestamps: bool = True,
                   tail_lines: int | None = None, since_time: str | None = None) -> str:
        """GET .../pods/{pod}/log: the current container's log, or with `previous` the one before it."""
        ...

    def follow(self, pod: str, namespace: str, *, since_time: str | None = None) -> AsyncIterator[str]:
        """GET .../log?follow=true&timestamps=true: each line (with its timestamp) as it is written, until the
        container ends or the caller stops iterating."""
        ...

    async def events(self, namespace: str) -> list[Manifest]:
        """core/v1 Events of the namespace (involvedObject, reason, message, type, count, lastTimestamp)."""
        ...

    async def close(self) -> None: ...
