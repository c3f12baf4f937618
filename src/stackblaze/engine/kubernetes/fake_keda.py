"""KEDA's kinds in the fake cluster: ScaledObjects and TriggerAuthentications stored as applied, as the real API
server stores them where KEDA's CRDs are installed, and refused as it refuses them where they are not. No KEDA
operator runs here: nothing scales a Deployment from them (as no controller runs the fake's CronJobs)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from stackblaze.errors import NotFoundError

API_VERSION = "keda.sh/v1alpha1"
KINDS = ("ScaledObject", "TriggerAuthentication")


class FakeKeda:
    def __init__(self, *, installed: bool = True) -> None:
        self.installed = installed  # whether the cluster has KEDA's CRDs
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name): as applied

    @staticmethod
    def serves(manifest: dict[str, Any]) -> bool:
        return manifest.get("apiVersion") == API_VERSION and manifest.get("kind") in KINDS

    def _check(self) -> None:
        if not self.installed:  # what the API server answers for a kind it does not serve
            raise NotFoundError("the server could not find the requested resource")

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self._check()
        stored = copy.deepcopy(manifest)
        metadata = stored["metadata"]
        self.objects[(stored["kind"], metadata.get("namespace", "default"), metadata["name"])] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def delete(self, kind: str, name: str, namespace: str) -> bool:
        """False when absent, the kind included (as client.delete reads the API server's 404)."""
        return self.objects.pop((kind, namespace, name), None) is not None

    def prune(self, selector: dict[str, str], keep: Iterable[str], namespace: str) -> list[str]:
        if not self.installed:
            return []
        kept = set(keep)
        gone = [(kind, name) for (kind, ns, name), stored in sorted(self.objects.items())
                if ns == namespace and name not in kept
                and all(stored["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
        for kind, name in gone:
            self.delete(kind, name, namespace)
        return [f"{kind}/{name}" for kind, name in gone]
