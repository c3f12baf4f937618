"""A project as Kubernetes objects: pure functions from the spec to `kubectl apply -f`-ready dicts.

Per worker service a Deployment (and a Secret for its env); a Namespace per project unless one is given.
Never a Service or an Ingress: workers take no traffic.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackblaze.engine.protocol import DEFAULT_ENV, Desired
from stackblaze.errors import UserError
from stackblaze.spec.backing import service_variables
from stackblaze.spec.commands import start_argv
from stackblaze.spec.model import BackingType, Project, Service
from stackblaze.spec.references import expand, references
from stackblaze.spec.rollout import Rolling

Manifest = dict[str, Any]

DEFAULT_IMAGE = "{project}-{service}:latest"  # what `stackblaze build --image` tags by default
MANAGER = "stackblaze"
# The image's `USER 10001:10001` (build/image.py): runAsNonRoot needs a numeric uid to check against.
RUN_AS = 10001
MAX_LABEL = 63  # a DNS-1123 label, and a label value: the instance name is both
RELEASE_LABEL = "stackblaze.dev/release"  # on the engine's pods: which release each runs
ENV_HASH_ANNOTATION = "stackblaze.dev/env-hash"
CONFIG_ANNOTATION = "stackblaze.dev/config"  # on the Deployment: the Desired.config last applied
REPLICAS_ANNOTATION = "stackblaze.dev/replicas"  # on the Deployment: the count stackblaze last applied
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def object_name(project: str, service: str) -> str:
    """`project-service`, a DNS-1123 label; past 63 characters cut and suffixed with a hash of the whole,
    so that two long names never collide (both parts are at most 40 characters: up to 81 together)."""
    name = f"{project}-{service}"
    if len(name) <= MAX_LABEL:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_LABEL - 9].rstrip('-')}-{digest}"


def secret_name(project: str, service: str) -> str:
    return f"{object_name(project, service)}-env"  # a Secret's name is a subdomain: up to 253 characters


def check_namespace(value: str) -> str:
    """A namespace given on the command line, checked here so kubectl does not reject it later."""
    if not _DNS_LABEL.fullmatch(value):
        raise UserError(f"--namespace: {value!r} is not a DNS-1123 label: lowercase letters, digits and '-', "
                        f"at most 63, starting and ending alphanumeric (e.g. --namespace my-app)")
    return value


def selector_labels(project: str, service: str) -> dict[str, str]:
    """What a Deployment selects its pods by: immutable once applied, so only the identity."""
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/instance": object_name(project, service)}


def labels(project: str, service: str) -> dict[str, str]:
    return {**selector_labels(project, service), "app.kubernetes.io/component": "worker",
            "app.kubernetes.io/part-of": project, "app.kubernetes.io/managed-by": MANAGER}


def namespace_manifest(project: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": project, "labels": {"app.kubernetes.io/part-of": project,
                                                     "app.kubernetes.io/managed-by": MANAGER}}}


def user_env(project: Project, service: Service) -> dict[str, str]:
    """The spec's env as the local engine merges it: the project's, then the service's (which wins), with
    `${{cache.REDIS_URL}}` references expanded as a deploy expands them (spec/references.py)."""
    return expand_offline(project, {**project.env, **service.env}, "env")


def expand_offline(project: Project, values: dict[str, str], what: str) -> dict[str, str]:
    """`values` with references to the project's backing services expanded as render k8s can (no password)."""
    backing: dict[str, tuple[BackingType, bool]] = {
        s.name: (s.type, s.auth == "password") for s in project.services if s.type == "redis" or s.type == "postgres"}
    for key, value in values.items():
        for name, variable in references(value):
            if backing.get(name, ("", False))[1] and variable in ("PASSWORD", "REDIS_URL", "DATABASE_URL"):
                # The password is generated at the first deploy and kept by the daemon: offline there is none.
                raise UserError(f"render k8s: {what} {key}: ${{{{{name}.{variable}}}}} carries {name}'s password, "
                                f"which exists only once deployed (auth: password): deploy with --target, or "
                                f"render with auth: none on {name}")
    variables = {name: service_variables(kind, name) for name, (kind, _) in backing.items()}
    return expand(values, variables, backing=backing).values


def secret_manifest(project: Project, service: Service, *, namespace: str) -> Manifest | None:
    """The service's env as a Secret (None without env): its values appear nowhere else, since a value in
    the pod template would be readable by anyone who may read Deployments."""
    values = user_env(project, service)
    if not values:
        return None
    return _secret(project.name, service.name, namespace, values)


def strategy(service: Service) -> Manifest:
    return _strategy(service.strategy, service.rolling)


def _strategy(kind: str, rolling: Rolling) -> Manifest:
    if kind == "recreate":
        return {"type": "Recreate"}
    # The spec keeps maxSurge / maxUnavailable as Kubernetes does: a whole number or a "25%" string.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": rolling.max_surge,
                                                       "maxUnavailable": rolling.max_unavailable}}


def rollout_seconds(service: Service) -> tuple[int, int]:
    """minReadySeconds and progressDeadlineSeconds: whole seconds, rounded up, and the deadline kept
    longer than min_ready as Kubernetes requires (10.2s and 10.5s would both round to 11)."""
    return _rollout_seconds(service.min_ready, service.progress_deadline)


def _rollout_seconds(min_ready_s: float, progress_deadline: float) -> tuple[int, int]:
    min_ready = math.ceil(min_ready_s)
    return min_ready, max(math.ceil(progress_deadline), min_ready + 1)


def _defaults(user: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in DEFAULT_ENV.items() if key not in user}


@dataclass(frozen=True)
class _Worker:
    """What a worker's Deployment is made of, from the spec (render k8s) or from a Desired (the engine)."""

    project: str
    service: str
    namespace: str
    image: str
    release: int
    start: str
    replicas: int | None  # None: an autoscaled worker's, whose count KEDA owns (no spec.replicas)
    shutdown_grace: float
    strategy: Manifest
    min_ready: int
    deadline: int
    has_env: bool
    # protocol.DEFAULT_ENV, less what the user's env sets (its Secret, read through envFrom, would lose to `env`)
    default_env: dict[str, str] = field(default_factory=dict)
    # The engine's additions: a label saying the release, and annotations on the object and its template.
    template_labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    template_annotations: dict[str, str] = field(default_factory=dict)
    disk: Mapping[str, Any] | None = None  # {"name", "mount_path", "size"}: a claim mounted (kubernetes/disks.py)


def deployment_manifest(project: Project, service: Service, *, namespace: str, image: str,
                        release: int) -> Manifest:
    """One worker as a Deployment: replicas restarted by the kubelet with the back-off the local engine
    copies, stopped with the grace the spec gives, replaced as the spec's strategy says."""
    min_ready, deadline = rollout_seconds(service)
    return _deployment(_Worker(
        project=project.name, service=service.name, namespace=namespace, image=image, release=release,
        start=service.start, replicas=None if service.autoscale else service.replicas,
        shutdown_grace=service.shutdown_grace, strategy=strategy(service), min_ready=min_ready, deadline=deadline,
        has_env=bool(user_env(project, service)),
        default_env=_defaults(user_env(project, service)), disk=service.disk.to_dict() if service.disk else None))


def _deployment(worker: _Worker) -> Manifest:
    env = [
        {"name": "STACKBLAZE_SERVICE", "value": worker.service},
        {"name": "STACKBLAZE_RELEASE", "value": str(worker.release)},
        {"name": "STACKBLAZE_SHUTDOWN_GRACE_SECONDS", "value": f"{worker.shutdown_grace:g}"},
        # No STACKBLAZE_REPLICA: a Deployment's pods are interchangeable and have no ordinal (only a
        # StatefulSet's do), so nothing can say which of 1..N a pod is.
        # e.g. PYTHONUNBUFFERED: Python buffers a pipe's output, so a worker's lines would reach `logs` in lumps
        *({"name": key, "value": value} for key, value in worker.default_env.items()),
    ]
    container: Manifest = {
        "name": worker.service,
        "image": worker.image,
        # `args`, the image's CMD, in the exec form the image's own CMD has (spec/commands.py): the stop
        # signal reaches the worker, not a shell, and the image's ENTRYPOINT (build --image --init) stays.
        "args": start_argv(worker.start),
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # a crash's last lines show in `describe pod`
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if worker.has_env:
        # Kubernetes gives `env` precedence over `envFrom`: STACKBLAZE_* stay ours, as on the local engine.
        container["envFrom"] = [{"secretRef": {"name": secret_name(worker.project, worker.service)}}]
    # The stop signal cannot be set here: Kubernetes sends the image's STOPSIGNAL, which build --image
    # writes from stop_signal (the pod field for it is alpha from 1.33 and absent before). service.user is
    # the local engine's (a host account); a pod runs as the image's uid.
    pod_spec: Manifest = {
        "containers": [container],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": math.ceil(worker.shutdown_grace),
        # Workers talk to no Kubernetes API and serve nothing: no token in the pod, and no *_SERVICE_HOST
        # variables for the namespace's Services, so the env matches the local engine's.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    template_metadata: Manifest = {"labels": {**labels(worker.project, worker.service), **worker.template_labels}}
    if worker.template_annotations:
        template_metadata["annotations"] = dict(worker.template_annotations)
    metadata: Manifest = {"name": object_name(worker.project, worker.service), "namespace": worker.namespace,
                          "labels": labels(worker.project, worker.service)}
    if worker.annotations:
        metadata["annotations"] = dict(worker.annotations)
    deployment: Manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": worker.replicas,
            "selector": {"matchLabels": selector_labels(worker.project, worker.service)},
            "strategy": worker.strategy,
            "minReadySeconds": worker.min_ready,
            "progressDeadlineSeconds": worker.deadline,
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }
    if worker.replicas is None:  # an apply that set it would undo every scale KEDA's HPA made
        del deployment["spec"]["replicas"]
    if worker.disk is not None:
        from stackblaze.engine.kubernetes.disks import mount_disk  # it builds on this module's names

        return mount_disk(deployment, worker.project, worker.disk)
    return deployment


def _secret(project: str, service: str, namespace: str, values: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(project, service), "namespace": namespace,
                         "labels": labels(project, service)},
            "stringData": dict(sorted(values.items()))}


def env_hash(values: dict[str, str]) -> str:
    """A digest of the Secret's content: in the pod template, so that an env change rolls the pods (a Secret
    read through envFrom is read only when a container starts), as an env change restarts local replicas."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _cluster_names(desired: Desired) -> tuple[str, str]:
    if desired.app is None or desired.namespace is None or desired.image is None:
        raise UserError(f"service {desired.service}: no app, namespace or image to run it on a cluster with "
                        f"(deploy it with --target to build and push its image)")
    return desired.app, desired.namespace


def secret_for(desired: Desired) -> Manifest | None:
    """The Secret of a service the engine runs (None without env): desired.env holds only the user's env."""
    app, namespace = _cluster_names(desired)
    return _secret(app, desired.service, namespace, desired.env) if desired.env else None


def deployment_for(desired: Desired) -> Manifest:
    """The Deployment the Kubernetes engine applies for a Desired: render k8s's, plus the release as a pod
    label (`ps` reads it), the env's hash in the template (an env change rolls) and the config digest on the
    Deployment itself (not on the template: a restart rolls through restartedAt instead)."""
    app, namespace = _cluster_names(desired)
    assert desired.image is not None
    min_ready, deadline = _rollout_seconds(desired.min_ready, desired.progress_deadline)
    return _deployment(_Worker(
        project=app, service=desired.service, namespace=namespace, image=desired.image, release=desired.release,
        start=desired.start, replicas=None if desired.autoscale else desired.replicas,
        shutdown_grace=desired.shutdown_grace,
        strategy=_strategy(desired.strategy, desired.rolling), min_ready=min_ready, deadline=deadline,
        has_env=bool(desired.env), default_env=_defaults(desired.env),
        template_labels={RELEASE_LABEL: str(desired.release)},
        annotations={CONFIG_ANNOTATION: desired.config, REPLICAS_ANNOTATION: str(desired.replicas)},
        template_annotations={ENV_HASH_ANNOTATION: env_hash(desired.env)} if desired.env else {},
        disk=desired.disk))


def image_for(template: str, *, project: str, service: str) -> str:
    """The image of one service: `{project}` and `{service}` filled in, as `build --image --tag` does."""
    return template.replace("{project}", project).replace("{service}", service)


def render_manifests(project: Project, *, namespace: str | None = None, image: str = DEFAULT_IMAGE,
                     release: int = 1) -> list[Manifest]:
    """Every object of the project in the order `kubectl apply -f` needs: the Namespace (the project's
    name unless `namespace` is given, which must then exist), then per service its Secret and Deployment, or
    a backing service's Service and StatefulSet (the backing services first, as a deploy applies them)."""
    manifests: list[Manifest] = []
    if namespace is None:
        namespace = project.name
        manifests.append(namespace_manifest(project.name))
    else:
        check_namespace(namespace)
    for service in sorted(project.services, key=lambda each: not each.is_backing):
        if service.is_backing:
            # Imported here: backing.py builds on this module's names and labels.
            from stackblaze.engine.kubernetes.backing import render_backing

            manifests.extend(render_backing(project, service, namespace=namespace))
            continue
        secret = secret_manifest(project, service, namespace=namespace)
        if secret is not None:
            manifests.append(secret)
        if service.disk is not None:  # its PersistentVolumeClaim, before the pods that mount it
            from stackblaze.engine.kubernetes.disks import claim_manifest

            manifests.append(claim_manifest(project.name, namespace, service.disk.to_dict()))
        if service.cron is not None:  # type: cron: a CronJob, its pods as the Deployment's would be
            from stackblaze.engine.kubernetes.cronjob import cronjob_manifest

            manifests.append(cronjob_manifest(project, service, namespace=namespace, release=release,
                                              image=image_for(image, project=project.name, service=service.name)))
            continue
        manifests.append(deployment_manifest(
            project, service, namespace=namespace, release=release,
            image=image_for(image, project=project.name, service=service.name)))
        if service.autoscale is not None:  # its ScaledObject after the Deployment it scales (kubernetes/keda.py)
            from stackblaze.engine.kubernetes.autoscaling import render_autoscale

            manifests.extend(render_autoscale(project, service, namespace=namespace))
    if any(service.autoscale is not None for service in project.services):
        from stackblaze.engine.kubernetes.autoscaling import render_queue_metrics

        manifests.extend(render_queue_metrics(project, namespace=namespace))
    return manifests
