"""The project's queue-metrics server on a cluster: a Secret with the queues of every autoscaled worker whose kind
KEDA cannot count itself (celery, rq, bullmq, dramatiq, redis-list), a one-replica Deployment running
`python -m stackblaze.engine.autoscale.metrics_server` on it, and a ClusterIP Service that KEDA's metrics-api
triggers read (keda.py). Pure functions, as manifests.py.

The image: the workers' release images hold the user's app, not stackblaze, so the server runs from an image of
its own, QUEUE_METRICS_IMAGE, built from stackblaze's wheel (README, "Autoscaling on Kubernetes"). No registry is
reachable where this was written, so it is a name to build and push, not one that exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from stackblaze.engine.autoscale.metrics_server import CONFIG_ENV, PORT
from stackblaze.engine.kubernetes.manifests import MANAGER, RUN_AS, Manifest, object_name
from stackblaze.engine.kubernetes.pod_access import access_manifests, pod_selectors
from stackblaze.errors import UserError
from stackblaze.spec.autoscale import Queues


def _version() -> str:
    try:
        return version("stackblaze")
    except PackageNotFoundError:  # a source tree without its metadata
        return "latest"


NAME = "queue-metrics"
QUEUE_METRICS_IMAGE = f"ghcr.io/stackblaze/queue-metrics:{_version()}"
CONFIG_DIR = "/etc/stackblaze/queue-metrics"
CONFIG_FILE = "queues.json"
CONFIG_HASH = "stackblaze.dev/config-hash"  # on the pod template: a changed config restarts the server


def metrics_name(project: str) -> str:
    return object_name(project, NAME)


def metrics_url(project: str, namespace: str, service: str) -> str:
    """What a metrics-api trigger reads for `service`: the Service's namespaced DNS name, which KEDA's operator
    (in its own namespace) resolves through its search path whatever the cluster's domain."""
    return f"http://{metrics_name(project)}.{namespace}.svc:{PORT}/metrics/{service}"


def _labels(project: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": metrics_name(project),
            "app.kubernetes.io/component": NAME, "app.kubernetes.io/part-of": project,
            "app.kubernetes.io/managed-by": MANAGER}


def _selector(project: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": metrics_name(project)}


def config_json(services: Mapping[str, Queues], polls: Mapping[str, float] | None = None,
                pods: Mapping[str, dict[str, str]] | None = None,
                latency: Mapping[str, tuple[float, float]] | None = None) -> str:
    """The server's config (metrics_server.load_config reads it), sorted so the same queues give the same bytes;
    `polls`: each service's `autoscale.poll`, the span the server takes its mean over (KEDA's pollingInterval);
    `pods`: the labels of the pods whose deletion costs it writes (engine/autoscale/deletion_cost.py);
    `latency`: (latency_slo, tolerance) of the workers that have a latency_slo (its `latency` ratio)."""
    polls, pods, latency = polls or {}, pods or {}, latency or {}
    return json.dumps({"services": {name: queues.to_dict() | ({"poll": polls[name]} if name in polls else {})
                                    | ({"pods": pods[name]} if name in pods else {})
                                    | ({"latency_slo": latency[name][0], "tolerance": latency[name][1]}
                                       if name in latency else {})
                                    for name, queues in sorted(services.items())}},
                      sort_keys=True, indent=1)


def check_no_clash(project: str, service_names: list[str]) -> None:
    if NAME in service_names:
        raise UserError(f"service {NAME}: its Deployment would be {metrics_name(project)}, the name of the project's "
                        f"queue-metrics server (its celery/rq/bullmq/dramatiq/redis-list autoscaling): rename the "
                        f"service (e.g. name: metrics)")


def queue_metrics_manifests(project: str, namespace: str, services: Mapping[str, Queues], *,
                            polls: Mapping[str, float] | None = None,
                            latency: Mapping[str, tuple[float, float]] | None = None,
                            image: str = QUEUE_METRICS_IMAGE,
                            host_aliases: list[Manifest] | None = None) -> list[Manifest]:
    """(ServiceAccount, Role and RoleBinding, when a worker is rq or celery,) Secret, Deployment and Service, in
    apply order; `services` (service -> its queues, URLs expanded) is not
    empty; `polls`: service -> its worker's poll; `latency`: service -> (latency_slo, tolerance), for the
    workers that have one. `host_aliases`: the pod's <name>.internal entries, as the
    workers get them (the engine knows the IPs)."""
    name = metrics_name(project)
    pods = pod_selectors(project, services)  # workers with a busy source: the server writes their pods' costs
    config = config_json(services, polls, pods, latency)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": name, "namespace": namespace, "labels": _labels(project)},
              "stringData": {CONFIG_FILE: config}}
    container: Manifest = {
        "name": NAME, "image": image,
        "command": ["python", "-m", "stackblaze.engine.autoscale.metrics_server"],
        "env": [{"name": CONFIG_ENV, "value": f"{CONFIG_DIR}/{CONFIG_FILE}"},
                {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
    }
    pod: Manifest = {
        "containers": [container],
        "volumes": [{"name": "config", "secret": {"secretName": name}}],
        "automountServiceAccountToken": bool(pods), "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if host_aliases:
        pod["hostAliases"] = host_aliases
    if pods:  # its token may get, list and patch pods (pod_access.py), and nothing else
        pod["serviceAccountName"] = name
    digest = hashlib.sha256(config.encode()).hexdigest()[:16]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(project)},
        "spec": {"replicas": 1, "selector": {"matchLabels": _selector(project)},
                 "template": {"metadata": {"labels": _labels(project), "annotations": {CONFIG_HASH: digest}},
                              "spec": pod}},
    }
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace, "labels": _labels(project)},
               "spec": {"type": "ClusterIP", "selector": _selector(project),
                        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}
    access = access_manifests(name, namespace, _labels(project)) if pods else []
    return [*access, secret, deployment, service]
