"""A worker's or cron service's disk on Kubernetes: a PersistentVolumeClaim (ReadWriteOnce, `size` requested)
and its volume in the pod template, mounted at `mount_path`. A Deployment with a disk is replaced with
strategy Recreate: a RollingUpdate's surge pod would wait for (or, on one node, share) the volume that the
old pod still holds. Pure functions, like manifests.py.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from stackblaze.engine.kubernetes.manifests import MANAGER, RUN_AS, Manifest, _cluster_names, object_name
from stackblaze.engine.protocol import Desired

VOLUME = "disk"


def claim_name(project: str, disk: str) -> str:
    """`<project>-<disk>-disk`: of its own, beside the Deployment `<project>-<service>` and a backing
    StatefulSet's claims `data-<project>-<service>-0`."""
    return f"{object_name(project, disk)}-disk"


def claim_manifest(project: str, namespace: str, disk: Mapping[str, Any]) -> Manifest:
    """The disk's claim; its storage class is the cluster's default. Never pruned nor deleted by stackblaze:
    the data outlives the service (delete it with kubectl when it is no longer wanted)."""
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name(project, disk["name"]), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": disk["name"], "app.kubernetes.io/component": "disk",
                                "app.kubernetes.io/part-of": project, "app.kubernetes.io/managed-by": MANAGER}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": disk["size"]}}},
    }


def mount_disk(deployment: Manifest, project: str, disk: Mapping[str, Any]) -> Manifest:
    """`deployment` (a copy) with the claim mounted at mount_path in its pod template, writable by the pod's
    uid (fsGroup; the volume's files are chowned only when its top is not the group's already), its path in
    STACKBLAZE_DISK_PATH as locally, and strategy Recreate."""
    deployment = copy.deepcopy(deployment)
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"] = [*pod.get("volumes", []),
                      {"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name(project, disk["name"])}}]
    pod["securityContext"] = {**pod.get("securityContext", {}), "fsGroup": RUN_AS,
                              "fsGroupChangePolicy": "OnRootMismatch"}
    container = pod["containers"][0]
    container["volumeMounts"] = [*container.get("volumeMounts", []),
                                 {"name": VOLUME, "mountPath": disk["mount_path"]}]
    container["env"] = [*container.get("env", []), {"name": "STACKBLAZE_DISK_PATH", "value": disk["mount_path"]}]
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    return deployment


def claim_for(desired: Desired) -> Manifest:
    """The claim the engine applies before the Deployment or CronJob that mounts it."""
    assert desired.disk is not None
    app, namespace = _cluster_names(desired)
    return claim_manifest(app, namespace, desired.disk)
