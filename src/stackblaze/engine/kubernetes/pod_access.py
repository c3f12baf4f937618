"""The queue-metrics server's right to write its workers' pod deletion costs (engine/autoscale/deletion_cost.py):
for the workers whose queues have a busy source (rq, celery), the labels of their pods, which go in the server's
config, and a ServiceAccount with a Role that may get, list and patch pods in the namespace, nothing more.
Pure functions, as manifests.py."""

from __future__ import annotations

from collections.abc import Mapping

from stackblaze.engine.autoscale.deletion_cost import BUSY_KINDS
from stackblaze.engine.kubernetes.manifests import Manifest, selector_labels
from stackblaze.spec.autoscale import Queues

RBAC = "rbac.authorization.k8s.io/v1"


def pod_selectors(project: str, services: Mapping[str, Queues]) -> dict[str, dict[str, str]]:
    """service -> the labels its Deployment selects its pods by, for the services whose busy state can be read."""
    return {service: selector_labels(project, service) for service, queues in services.items()
            if queues.kind in BUSY_KINDS}


def access_manifests(name: str, namespace: str, labels: Mapping[str, str]) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding, all named `name`, in apply order. `patch` is for the annotation,
    `list` for the pods of each worker by label, `get` for a client that reads one back."""
    metadata = {"name": name, "namespace": namespace, "labels": dict(labels)}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata,
               "automountServiceAccountToken": False}  # only the server's pod mounts it (its own spec says so)
    role = {"apiVersion": RBAC, "kind": "Role", "metadata": metadata,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}]}
    binding = {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": metadata,
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}
    return [account, role, binding]
