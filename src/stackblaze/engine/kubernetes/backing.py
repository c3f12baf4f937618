"""A project's Redis or PostgreSQL on a cluster: a ClusterIP Service and a one-replica StatefulSet with a volume
claim, and the `hostAliases` that make `<name>.internal` resolve to the Service inside the workers' pods.

Pure functions, as manifests.py: from a Desired (the engine) or from the spec (render k8s). The Service and the
StatefulSet are named as the workers' Deployments are (`<project>-<service>`), so two projects can share a
target's namespace; the workers reach them as `<service>.internal` through hostAliases, never by that name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackblaze.engine.kubernetes.manifests import (
    MANAGER,
    Manifest,
    object_name,
    secret_name,
    selector_labels,
)
from stackblaze.engine.protocol import Desired
from stackblaze.errors import UserError
from stackblaze.spec.backing import PORTS, POSTGRES_DATABASE, POSTGRES_USER, internal_host
from stackblaze.spec.model import BACKING_TYPES, BackingType, Project, Service

# The official images; a target's registry is not used for them (nothing of ours is built into them).
IMAGES: dict[BackingType, str] = {"redis": "redis:7", "postgres": "postgres:16"}
# Both images' own server user (uid 999 in their Debian variants): the pods never run as root, and the volume
# is made theirs through fsGroup.
SERVER_UID = 999
DATA = "data"  # the volume claim template, and so the PVC `data-<statefulset>-0` that outlives the pod
MOUNTS: dict[BackingType, str] = {"redis": "/data", "postgres": "/var/lib/postgresql/data"}
# In a subdirectory: a fresh volume's root may hold lost+found, which initdb refuses.
PGDATA = "/var/lib/postgresql/data/pgdata"
PROBE_SECONDS = 5


@dataclass(frozen=True)
class _Backing:
    """What a backing service's objects are made of, from the spec or from a Desired."""

    project: str
    service: str
    kind: BackingType
    namespace: str
    replicas: int
    shutdown_grace: float
    disk_size: str
    password: bool  # auth: password; the password itself is in the Secret secret_name(project, service)


def backing_labels(project: str, service: str, kind: str) -> dict[str, str]:
    return {**selector_labels(project, service), "app.kubernetes.io/component": kind,
            "app.kubernetes.io/part-of": project, "app.kubernetes.io/managed-by": MANAGER}


def _kind(value: str, service: str) -> BackingType:
    for kind in BACKING_TYPES:
        if value == kind:
            return kind
    raise UserError(f"service {service}: type {value!r} is not a backing service (redis or postgres)")


def service_manifest(backing: _Backing) -> Manifest:
    """The ClusterIP Service: reachable inside the cluster only (no NodePort, LoadBalancer or Ingress)."""
    port = PORTS[backing.kind]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": object_name(backing.project, backing.service), "namespace": backing.namespace,
                         "labels": backing_labels(backing.project, backing.service, backing.kind)},
            "spec": {"type": "ClusterIP", "selector": selector_labels(backing.project, backing.service),
                     "ports": [{"name": backing.kind, "port": port, "targetPort": port, "protocol": "TCP"}]}}


def _password_env(backing: _Backing, *names: str) -> list[Manifest]:
    ref = {"secretKeyRef": {"name": secret_name(backing.project, backing.service), "key": "PASSWORD"}}
    return [{"name": name, "valueFrom": ref} for name in names]


def _redis(backing: _Backing) -> Manifest:
    # AOF fsynced every second: a crash loses at most the last second. Protected mode off: it refuses every
    # client but loopback when no password is set, and the Service (cluster-internal) is how workers come in.
    server = ["redis-server", "--port", str(PORTS["redis"]), "--dir", MOUNTS["redis"], "--appendonly", "yes",
              "--appendfsync", "everysec"]
    if backing.password:
        # The password from the env by the shell, never in the pod spec's argv (`kubectl get pod` shows argv).
        command = ["sh", "-c", f'exec {" ".join(server)} --requirepass "$REDIS_PASSWORD"']
        env = _password_env(backing, "REDIS_PASSWORD", "REDISCLI_AUTH")  # redis-cli (the probe) reads the latter
    else:
        command, env = [*server, "--protected-mode", "no"], []
    # PONG, not just an open port: while it loads its AOF Redis accepts connections and answers -LOADING.
    probe = {"exec": {"command": ["sh", "-c", "redis-cli ping | grep -qx PONG"]}}
    return {"command": command, "env": env, "probe": probe}


def _postgres(backing: _Backing) -> Manifest:
    env: list[Manifest] = [{"name": "POSTGRES_USER", "value": POSTGRES_USER},
                           {"name": "POSTGRES_DB", "value": POSTGRES_DATABASE},
                           {"name": "PGDATA", "value": PGDATA}]
    if backing.password:
        env += _password_env(backing, "POSTGRES_PASSWORD")
    else:  # as locally: no password, reachable only inside the cluster through the ClusterIP Service
        env.append({"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"})
    # Over TCP: the image's first-start initialisation runs a server on the unix socket only, not yet ready.
    probe = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", str(PORTS["postgres"]),
                                  "-U", POSTGRES_USER, "-d", POSTGRES_DATABASE]}}
    return {"command": None, "env": env, "probe": probe}


def stateful_set_manifest(backing: _Backing) -> Manifest:
    """One replica, its data on the claim `data` (kept when the StatefulSet is deleted or scaled down), ready
    when the server answers, stopped within shutdown_grace."""
    name = object_name(backing.project, backing.service)
    labels = backing_labels(backing.project, backing.service, backing.kind)
    server = _redis(backing) if backing.kind == "redis" else _postgres(backing)
    port = PORTS[backing.kind]
    container: Manifest = {
        "name": backing.kind,
        "image": IMAGES[backing.kind],
        **({"command": server["command"]} if server["command"] is not None else {}),
        "ports": [{"name": backing.kind, "containerPort": port, "protocol": "TCP"}],
        "env": server["env"],
        "readinessProbe": {**server["probe"], "periodSeconds": PROBE_SECONDS, "timeoutSeconds": PROBE_SECONDS,
                           "failureThreshold": 3},
        "volumeMounts": [{"name": DATA, "mountPath": MOUNTS[backing.kind]}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if not container["env"]:
        del container["env"]
    if backing.kind == "postgres":
        # PostgreSQL's fast shutdown is SIGINT; SIGTERM is its "smart" one, which waits for every session to
        # end, and a worker's pooled connections never do: the pod would sit out its grace and be SIGKILLed.
        # The image's STOPSIGNAL SIGINT is honoured by containerd and CRI-O but by no contract; this hook asks
        # the postmaster (PID 1: the image's entrypoint execs it) for the fast shutdown before the kubelet's
        # signal, on every runtime. A later SIGTERM changes nothing: PostgreSQL keeps the fastest mode asked.
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sh", "-c", "kill -INT 1"]}}}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": backing.namespace, "labels": labels},
        "spec": {
            "replicas": backing.replicas,
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(backing.project, backing.service)},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": dict(labels)},  # copies: YAML would print one dict used twice as an alias
                "spec": {
                    "containers": [container],
                    "terminationGracePeriodSeconds": math.ceil(backing.shutdown_grace),
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": SERVER_UID, "runAsGroup": SERVER_UID,
                                        "fsGroup": SERVER_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": DATA, "labels": dict(labels)},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": backing.disk_size}}},
            }],
        },
    }


def password_secret(project: str, service: str, namespace: str, password: str, kind: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(project, service), "namespace": namespace,
                         "labels": backing_labels(project, service, kind)},
            "stringData": {"PASSWORD": password}}


@dataclass(frozen=True)
class BackingObjects:
    """What the engine applies for one backing service, in this order."""

    secret: Manifest | None
    service: Manifest
    stateful_set: Manifest


def backing_for(desired: Desired) -> BackingObjects:
    """The objects of a backing service's Desired (kind redis | postgres, `backing` set, env {"PASSWORD": pw}
    with auth: password)."""
    if desired.app is None or desired.namespace is None or desired.backing is None:
        raise UserError(f"service {desired.service}: no app, namespace or backing settings to run it on a "
                        f"cluster with (deploy it with --target)")
    password = desired.env.get("PASSWORD")
    if desired.backing.get("auth") == "password" and not password:
        raise UserError(f"service {desired.service}: auth: password but no password was generated for it "
                        f"(deploy it again)")
    backing = _Backing(project=desired.app, service=desired.service, kind=_kind(desired.kind, desired.service),
                       namespace=desired.namespace, replicas=desired.replicas, shutdown_grace=desired.shutdown_grace,
                       disk_size=str(desired.backing.get("disk_size") or "1Gi"), password=password is not None)
    secret = (password_secret(desired.app, desired.service, desired.namespace, password, desired.kind)
              if password is not None else None)
    return BackingObjects(secret, service_manifest(backing), stateful_set_manifest(backing))


def render_backing(project: Project, service: Service, *, namespace: str) -> list[Manifest]:
    """render k8s's Service and StatefulSet of a backing service. With auth: password the StatefulSet reads
    PASSWORD from the Secret secret_name(...), which render does not write: a password made offline would
    change with every render (the CLI says how to create it)."""
    backing = _Backing(project=project.name, service=service.name, kind=_kind(service.type, service.name),
                       namespace=namespace, replicas=1, shutdown_grace=service.shutdown_grace,
                       disk_size=service.disk_size, password=service.auth == "password")
    return [service_manifest(backing), stateful_set_manifest(backing)]


def host_aliases(ips: Mapping[str, str]) -> list[Manifest]:
    """The pod's /etc/hosts lines (the kubelet writes them): `<name>.internal` -> its Service's cluster IP,
    one entry per name, sorted so that the same IPs make the same template."""
    return [{"ip": ip, "hostnames": [internal_host(name)]} for name, ip in sorted(ips.items())]


def with_host_aliases(deployment: Manifest, ips: Mapping[str, str]) -> Manifest:
    """A worker's Deployment with hostAliases for these backing services (unchanged when there are none)."""
    if not ips:
        return deployment
    template = deployment["spec"]["template"]
    pod_spec: dict[str, Any] = {**template["spec"], "hostAliases": host_aliases(ips)}
    return {**deployment, "spec": {**deployment["spec"], "template": {**template, "spec": pod_spec}}}


def with_job_host_aliases(cronjob: Manifest, ips: Mapping[str, str]) -> Manifest:
    """A cron service's CronJob with the same hostAliases in its jobs' pod template."""
    if not ips:
        return cronjob
    job = cronjob["spec"]["jobTemplate"]
    pod = with_host_aliases({"spec": job["spec"]}, ips)["spec"]
    return {**cronjob, "spec": {**cronjob["spec"], "jobTemplate": {**job, "spec": pod}}}
