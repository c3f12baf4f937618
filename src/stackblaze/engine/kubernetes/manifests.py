"""A project as Kubernetes objects: pure functions from the spec to `kubectl apply -f`-ready dicts.

Per worker service a Deployment (and a Secret for its env); a Namespace per project unless one is given.
Never a Service or an Ingress: workers take no traffic.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from stackblaze.errors import UserError
from stackblaze.spec.commands import start_argv
from stackblaze.spec.model import Project, Service

Manifest = dict[str, Any]

DEFAULT_IMAGE = "{project}-{service}:latest"  # what `stackblaze build --image` tags by default
MANAGER = "stackblaze"
# The image's `USER 10001:10001` (build/image.py): runAsNonRoot needs a numeric uid to check against.
RUN_AS = 10001
MAX_LABEL = 63  # a DNS-1123 label, and a label value: the instance name is both
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
    """The spec's env as the local engine merges it: the project's, then the service's (which wins)."""
    return {**project.env, **service.env}


def secret_manifest(project: Project, service: Service, *, namespace: str) -> Manifest | None:
    """The service's env as a Secret (None without env): its values appear nowhere else, since a value in
    the pod template would be readable by anyone who may read Deployments."""
    values = user_env(project, service)
    if not values:
        return None
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(project.name, service.name), "namespace": namespace,
                         "labels": labels(project.name, service.name)},
            "stringData": dict(sorted(values.items()))}


def strategy(service: Service) -> Manifest:
    if service.strategy == "recreate":
        return {"type": "Recreate"}
    # The spec keeps maxSurge / maxUnavailable as Kubernetes does: a whole number or a "25%" string.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": service.rolling.max_surge,
                                                       "maxUnavailable": service.rolling.max_unavailable}}


def rollout_seconds(service: Service) -> tuple[int, int]:
    """minReadySeconds and progressDeadlineSeconds: whole seconds, rounded up, and the deadline kept
    longer than min_ready as Kubernetes requires (10.2s and 10.5s would both round to 11)."""
    min_ready = math.ceil(service.min_ready)
    return min_ready, max(math.ceil(service.progress_deadline), min_ready + 1)


def deployment_manifest(project: Project, service: Service, *, namespace: str, image: str,
                        release: int) -> Manifest:
    """One worker as a Deployment: replicas restarted by the kubelet with the back-off the local engine
    copies, stopped with the grace the spec gives, replaced as the spec's strategy says."""
    min_ready, deadline = rollout_seconds(service)
    env = [
        {"name": "STACKBLAZE_SERVICE", "value": service.name},
        {"name": "STACKBLAZE_RELEASE", "value": str(release)},
        {"name": "STACKBLAZE_SHUTDOWN_GRACE_SECONDS", "value": f"{service.shutdown_grace:g}"},
        # No STACKBLAZE_REPLICA: a Deployment's pods are interchangeable and have no ordinal (only a
        # StatefulSet's do), so nothing can say which of 1..N a pod is.
    ]
    container: Manifest = {
        "name": service.name,
        "image": image,
        # `args`, the image's CMD, in the exec form the image's own CMD has (spec/commands.py): the stop
        # signal reaches the worker, not a shell, and the image's ENTRYPOINT (build --image --init) stays.
        "args": start_argv(service.start),
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # a crash's last lines show in `describe pod`
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if user_env(project, service):
        # Kubernetes gives `env` precedence over `envFrom`: STACKBLAZE_* stay ours, as on the local engine.
        container["envFrom"] = [{"secretRef": {"name": secret_name(project.name, service.name)}}]
    # The stop signal cannot be set here: Kubernetes sends the image's STOPSIGNAL, which build --image
    # writes from stop_signal (the pod field for it is alpha from 1.33 and absent before). service.user is
    # the local engine's (a host account); a pod runs as the image's uid.
    pod_spec: Manifest = {
        "containers": [container],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": math.ceil(service.shutdown_grace),
        # Workers talk to no Kubernetes API and serve nothing: no token in the pod, and no *_SERVICE_HOST
        # variables for the namespace's Services, so the env matches the local engine's.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": object_name(project.name, service.name), "namespace": namespace,
                     "labels": labels(project.name, service.name)},
        "spec": {
            "replicas": service.replicas,
            "selector": {"matchLabels": selector_labels(project.name, service.name)},
            "strategy": strategy(service),
            "minReadySeconds": min_ready,
            "progressDeadlineSeconds": deadline,
            "template": {"metadata": {"labels": labels(project.name, service.name)}, "spec": pod_spec},
        },
    }


def image_for(template: str, *, project: str, service: str) -> str:
    """The image of one service: `{project}` and `{service}` filled in, as `build --image --tag` does."""
    return template.replace("{project}", project).replace("{service}", service)


def render_manifests(project: Project, *, namespace: str | None = None, image: str = DEFAULT_IMAGE,
                     release: int = 1) -> list[Manifest]:
    """Every object of the project in the order `kubectl apply -f` needs: the Namespace (the project's
    name unless `namespace` is given, which must then exist), then per service its Secret and Deployment."""
    manifests: list[Manifest] = []
    if namespace is None:
        namespace = project.name
        manifests.append(namespace_manifest(project.name))
    else:
        check_namespace(namespace)
    for service in project.services:
        secret = secret_manifest(project, service, namespace=namespace)
        if secret is not None:
            manifests.append(secret)
        manifests.append(deployment_manifest(
            project, service, namespace=namespace, release=release,
            image=image_for(image, project=project.name, service=service.name)))
    return manifests
